# The default vmio-edu guest: an ATA PIO driver in the order Linux's libata uses (x86-64, keystone syntax).
#
# Read it next to drivers/ata/libata-sff.c (Linux 3.7). Each part names the libata function it stands
# for. Where libata is a state machine run from a work queue or the interrupt handler, this guest is a
# straight line of code doing the same port accesses in the same order; every IN/OUT below is one exit
# to the VMM, so the order is what the learner sees in the trace.
#
# The host fills the parameter block at PARAMS, starts the vCPU at the load address (0x1000) in long
# mode (the vmio_edu.guest.loader state: flat segments, identity paging, RSP = 0x8000), and reads the
# result block at RESULT once the guest halts with `cli; hlt`.
#
# Keystone note: memory is always addressed through a register ([rbx + P_LBA]); keystone 0.9.2
# mis-encodes some absolute operands ([0x9000]) in 64-bit mode.

# ---- guest memory map (guest-physical = virtual: the loader identity-maps RAM) -----------------------
.equ CODE,          0x1000      # this program is loaded and entered here
.equ PARAMS,        0x9000      # parameter block, written by the host before the start
.equ RESULT,        0x9100      # result block, read by the host after the final hlt
.equ IDT_BASE,      0xa000      # the IDT this guest builds: 256 gates x 16 bytes
.equ BUFFER,        0x10000     # default data buffer: up to 256 sectors = 128 KiB
.equ BUFFER2,       0x30000     # default read-back buffer for op 3 (another 128 KiB)

# ---- parameter block (PARAMS + offset) ---------------------------------------------------------------
.equ P_OP,          0x00        # u32: 1 write, 2 read, 3 write then read back, 4 identify, 5 raw command
.equ P_LBA,         0x04        # u32: first sector (28-bit LBA)
.equ P_COUNT,       0x08        # u32: sectors, 1..256; 0 means 256 as in the ATA register
.equ P_FLAGS,       0x0c        # u32: bit 0 = polling mode (nIEN set, no interrupts)
.equ P_BUFFER,      0x10        # u64: data buffer (write source, read destination)
.equ P_BUFFER2,     0x18        # u64: read-back destination for op 3
.equ P_COMMAND,     0x20        # u32: the command byte for op 5

.equ OP_WRITE,      1
.equ OP_READ,       2
.equ OP_WRITE_READ, 3
.equ OP_IDENTIFY,   4
.equ OP_RAW,        5
.equ FLAG_POLLING,  0x01

# ---- result block (RESULT + offset), all u32 ---------------------------------------------------------
.equ R_DONE,        0x00        # DONE_MAGIC once the program reached its end (not after an exception)
.equ R_STATUS,      0x04        # the last ATA status the driver saw
.equ R_ERROR,       0x08        # the ATA error register, read when status had ERR
.equ R_IRQS,        0x0c        # IRQ 14 interrupts the handler took
.equ R_SECTORS,     0x10        # sectors moved through the data port (a write-read counts both)
.equ R_VECTOR,      0x14        # vector of the last unexpected exception/interrupt, 0xff for none
.equ R_IRQ_STATUS,  0x18        # the status the IRQ 14 handler read (which acknowledged the IRQ)
.equ R_OUTCOME,     0x1c        # 0 ok, 1 device error (ERR), 2 protocol (DRQ not as expected), 3 bad parameters

.equ DONE_MAGIC,    0x454e4f44  # "DONE" in memory
.equ NO_VECTOR,     0xff
.equ VECTOR_OTHER,  0xfe        # an interrupt at a vector >= 0x30 (they share one handler)
.equ OUTCOME_OK,          0
.equ OUTCOME_DEVICE_ERROR, 1
.equ OUTCOME_PROTOCOL,    2
.equ OUTCOME_BAD_PARAMS,  3

# ---- ATA registers of the primary channel (include/linux/ata.h names) --------------------------------
.equ ATA_DATA,      0x1f0       # 16-bit data port
.equ ATA_ERROR,     0x1f1       # read: error register
.equ ATA_NSECT,     0x1f2
.equ ATA_LBAL,      0x1f3
.equ ATA_LBAM,      0x1f4
.equ ATA_LBAH,      0x1f5
.equ ATA_DEVICE,    0x1f6
.equ ATA_STATUS,    0x1f7       # read: status (acknowledges the interrupt); write: command
.equ ATA_COMMAND,   0x1f7
.equ ATA_ALTSTATUS, 0x3f6       # read: status without acknowledging; write: device control
.equ ATA_CTL,       0x3f6

.equ ATA_ERR,       0x01        # status bits
.equ ATA_DRQ,       0x08
.equ ATA_BUSY,      0x80
.equ ATA_NIEN,      0x02        # device control: interrupts disabled
.equ ATA_DEVCTL_OBS, 0x08       # device control: obsolete bit libata always sets
.equ ATA_DEVICE_LBA, 0xe0       # device register: obsolete bits 7 and 5, LBA bit 6, drive 0
.equ ATA_CMD_PIO_READ,  0x20    # READ SECTORS
.equ ATA_CMD_PIO_WRITE, 0x30    # WRITE SECTORS
.equ ATA_CMD_ID_ATA,    0xec    # IDENTIFY DEVICE
.equ SECTOR_WORDS,  256

# ---- 8259 PIC ports and the IRQ 14 vector ------------------------------------------------------------
.equ PIC_MASTER_CMD, 0x20
.equ PIC_MASTER_IMR, 0x21
.equ PIC_SLAVE_CMD,  0xa0
.equ PIC_SLAVE_IMR,  0xa1
.equ PIC_EOI,        0x20       # OCW2: non-specific end of interrupt
.equ IRQ14_VECTOR,   0x2e       # slave base 0x28 + IR6

# Register use: rbx = PARAMS, rbp = RESULT, r12d = IRQs already consumed by the driver,
# r13d = sectors left in the current transfer, rsi/rdi = buffer cursor for outsw/insw.

# ======================================================================================================
start:
    cli                                 # no interrupts until the IDT and the PIC are ready
    cld                                 # string I/O moves forward through the buffer
    mov rbx, PARAMS
    mov rbp, RESULT
    call init_result
    call setup_idt
    call init_8259A
    xor r12d, r12d

    # Check the parameters (libata would have rejected these before building a taskfile).
    mov eax, dword ptr [rbx + P_LBA]
    cmp eax, 0x0fffffff                 # 28-bit LBA
    ja bad_params
    mov eax, dword ptr [rbx + P_COUNT]
    cmp eax, 256
    ja bad_params

    mov eax, dword ptr [rbx + P_OP]
    cmp eax, OP_WRITE
    je op_write
    cmp eax, OP_READ
    je op_read
    cmp eax, OP_WRITE_READ
    je op_write_read
    cmp eax, OP_IDENTIFY
    je op_identify
    cmp eax, OP_RAW
    je op_raw
bad_params:
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_BAD_PARAMS
    jmp finish

op_write:
    call sector_count
    mov rsi, qword ptr [rbx + P_BUFFER]
    call ata_pio_write
    jmp finish

op_read:
    call sector_count
    mov rdi, qword ptr [rbx + P_BUFFER]
    mov al, ATA_CMD_PIO_READ
    call ata_pio_read
    jmp finish

op_write_read:
    call sector_count
    mov rsi, qword ptr [rbx + P_BUFFER]
    call ata_pio_write                  # a failure jumps straight to finish
    call sector_count
    mov rdi, qword ptr [rbx + P_BUFFER2]
    mov al, ATA_CMD_PIO_READ
    call ata_pio_read
    jmp finish

op_identify:
    mov r13d, 1                         # IDENTIFY returns one 512-byte block
    mov rdi, qword ptr [rbx + P_BUFFER]
    mov al, ATA_CMD_ID_ATA
    call ata_pio_read
    jmp finish

op_raw:
    mov al, byte ptr [rbx + P_COMMAND]
    call ata_nodata
    jmp finish

# The end: record that we got here and stop the vCPU for good (KVM_EXIT_HLT with interrupts off).
finish:
    mov dword ptr [rbp + R_DONE], DONE_MAGIC
halt_forever:
    cli
    hlt
    jmp halt_forever

# r13d = the sector count from the parameters, 0 meaning 256 (the ATA nsect register's rule).
sector_count:
    mov r13d, dword ptr [rbx + P_COUNT]
    and r13d, 0xff
    jnz sector_count_done
    mov r13d, 256
sector_count_done:
    ret

init_result:
    mov dword ptr [rbp + R_DONE], 0
    mov dword ptr [rbp + R_STATUS], 0
    mov dword ptr [rbp + R_ERROR], 0
    mov dword ptr [rbp + R_IRQS], 0
    mov dword ptr [rbp + R_SECTORS], 0
    mov dword ptr [rbp + R_VECTOR], NO_VECTOR
    mov dword ptr [rbp + R_IRQ_STATUS], 0
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_OK
    ret

# ======================================================================================================
# ata_sff_qc_issue -> ata_tf_to_host: load the taskfile and write the command.  al = command byte.
# The order is ata_sff_tf_load's (device control first), then ata_sff_exec_command.
ata_issue:
    mov cl, al                          # keep the command byte

    # ata_sff_tf_load: device control. nIEN set = polling mode, the drive raises no interrupt.
    mov al, ATA_DEVCTL_OBS
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jz ata_issue_ctl
    or al, ATA_NIEN
ata_issue_ctl:
    mov dx, ATA_CTL
    out dx, al

    # ata_dev_select: the device register, with LBA mode and LBA bits 27:24. (libata selects the
    # drive first and writes the device register again at the end of ata_sff_tf_load; once is enough.)
    mov eax, dword ptr [rbx + P_LBA]
    shr eax, 24
    and al, 0x0f
    or al, ATA_DEVICE_LBA
    mov dx, ATA_DEVICE
    out dx, al

    # ata_sff_tf_load: sector count, then LBA low/mid/high.
    mov al, byte ptr [rbx + P_COUNT]    # 256 is written as 0
    mov dx, ATA_NSECT
    out dx, al
    mov eax, dword ptr [rbx + P_LBA]
    mov dx, ATA_LBAL
    out dx, al
    shr eax, 8
    mov dx, ATA_LBAM
    out dx, al
    shr eax, 8
    mov dx, ATA_LBAH
    out dx, al

    # ata_sff_exec_command: the command byte, then ata_sff_pause (one altstatus read, result unused).
    mov al, cl
    mov dx, ATA_COMMAND
    out dx, al
    mov dx, ATA_ALTSTATUS
    in al, dx
    ret

# ata_sff_busy_wait (used by ata_sff_pio_task): read the status register until BSY clears.  -> al
ata_poll_busy:
    mov dx, ATA_STATUS
ata_poll_busy_again:
    in al, dx
    test al, ATA_BUSY
    jnz ata_poll_busy_again
    ret

# Wait for the drive to finish the current phase.  -> al = status
#  IRQ mode:     ata_sff_interrupt does the work; we sleep in `hlt` until the handler has counted
#                an IRQ and use the status it read (that read acknowledged the interrupt).
#  polling mode: ata_sff_pio_task polls the status register until BSY clears.
ata_wait:
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jnz ata_poll_busy
ata_wait_irq:
    cli
    mov eax, dword ptr [rbp + R_IRQS]
    cmp eax, r12d
    jne ata_wait_irq_seen
    sti                                 # sti delays interrupts by one instruction, so an IRQ
    hlt                                 # arriving now still wakes this hlt: no lost wake-up
    jmp ata_wait_irq
ata_wait_irq_seen:
    mov r12d, eax                       # consume every IRQ counted so far
    mov eax, dword ptr [rbp + R_IRQ_STATUS]
    ret

# ata_sff_hsm_move's first check: a status with ERR ends the command (ata_sff_tf_read then reads the
# error register).  al = status; returns only if there is no error.
ata_check:
    movzx eax, al
    mov dword ptr [rbp + R_STATUS], eax
    test al, ATA_ERR
    jnz ata_fail_device
    ret

ata_fail_device:
    mov dx, ATA_ERROR
    in al, dx
    movzx eax, al
    mov dword ptr [rbp + R_ERROR], eax
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_DEVICE_ERROR
    jmp finish                          # abandon the transfer (the stack does not matter any more)

ata_fail_protocol:                      # ata_sff_hsm_move's "DRQ=0/1 when it should not be" cases
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_PROTOCOL
    jmp finish

# ata_pio_sector -> ata_sff_data_xfer -> iowrite16_rep: one sector out of [rsi], 256 words.
ata_pio_sector_out:
    mov dx, ATA_DATA
    mov ecx, SECTOR_WORDS
ata_pio_outsw:                          # (a label for guest breakpoints: break_at(guest_label="ata_pio_outsw"))
    rep outsw
    inc dword ptr [rbp + R_SECTORS]
    ret

# ata_pio_sector -> ata_sff_data_xfer -> ioread16_rep: one sector into [rdi], 256 words.
ata_pio_sector_in:
    mov dx, ATA_DATA
    mov ecx, SECTOR_WORDS
ata_pio_insw:                           # (a label for guest breakpoints)
    rep insw
    inc dword ptr [rbp + R_SECTORS]
    ret

# WRITE SECTORS (PIO out), r13d sectors from [rsi].  ata_sff_qc_issue, then ata_sff_hsm_move:
#   HSM_ST_FIRST: ata_sff_pio_task polls until BSY clears; DRQ must be set; send the first sector.
#   HSM_ST:       after each sector wait (IRQ or BSY poll); DRQ set means "next sector, please".
#   HSM_ST_LAST:  after the last sector the drive must report no DRQ; the command is complete.
ata_pio_write:
    mov al, ATA_CMD_PIO_WRITE
    call ata_issue
    call ata_poll_busy                  # HSM_ST_FIRST: the drive raises no IRQ before the first block
    call ata_check
    test al, ATA_DRQ
    jz ata_fail_protocol
ata_pio_write_sector:
    call ata_pio_sector_out
    call ata_wait                       # IRQ 14 (or BSY clear) after each sector reached the disk
    call ata_check
    dec r13d
    jz ata_pio_write_last
    test al, ATA_DRQ                    # HSM_ST: the drive wants the next sector
    jz ata_fail_protocol
    jmp ata_pio_write_sector
ata_pio_write_last:
    test al, ATA_DRQ                    # HSM_ST_LAST: nothing more may be asked for
    jnz ata_fail_protocol
    ret

# READ SECTORS / IDENTIFY (PIO in), r13d sectors into [rdi], al = command.  ata_sff_hsm_move in HSM_ST:
#   before each sector wait for the IRQ (or poll BSY); DRQ must be set; read 256 words.
#   After the last sector: "all data read", ata_wait_idle polls status until BSY and DRQ clear.
ata_pio_read:
    call ata_issue
ata_pio_read_sector:
    call ata_wait
    call ata_check
    test al, ATA_DRQ
    jz ata_fail_protocol
    call ata_pio_sector_in
    dec r13d
    jnz ata_pio_read_sector
    mov dx, ATA_STATUS                  # ata_wait_idle -> ata_sff_busy_wait(ATA_BUSY | ATA_DRQ)
ata_pio_read_idle:
    in al, dx
    test al, ATA_BUSY | ATA_DRQ
    jnz ata_pio_read_idle
    call ata_check
    ret

# A command with no data phase (ATA_PROT_NODATA), used for the raw command byte of op 5.
# ata_sff_hsm_move goes straight to HSM_ST_LAST: wait (IRQ or BSY), check ERR, expect no DRQ.
# (A data command sent this way is reported as a protocol outcome once the drive asks for data; in IRQ
# mode a command that raises no interrupt leaves the guest waiting in hlt.)
ata_nodata:
    call ata_issue
    call ata_wait
    call ata_check
    test al, ATA_DRQ
    jnz ata_fail_protocol
    ret

# ======================================================================================================
# Interrupts.  The IDT: vectors 0x00-0x2f go through `interrupt_handlers`, 0x2e to the IRQ 14
# handler and every other to a stub that records its vector; vectors 0x30-0xff share one stub.
setup_idt:
    mov rdi, IDT_BASE
    xor ecx, ecx                        # vector
    mov r8w, cs                         # gates use the code segment we are running in
setup_idt_gate:
    mov rax, unexpected_vector
    cmp ecx, 0x30
    jae setup_idt_write
    mov rax, qword ptr [rcx*8 + interrupt_handlers]
setup_idt_write:                        # a 16-byte long-mode interrupt gate
    mov word ptr [rdi], ax              # offset 15:0
    mov word ptr [rdi + 2], r8w         # code selector
    mov word ptr [rdi + 4], 0x8e00      # present, DPL 0, type 14 = interrupt gate (clears IF), IST 0
    shr rax, 16
    mov word ptr [rdi + 6], ax          # offset 31:16
    shr rax, 16
    mov dword ptr [rdi + 8], eax        # offset 63:32
    mov dword ptr [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 256
    jb setup_idt_gate
    mov rax, idt_descriptor
    lidt [rax]
    ret

# init_8259A (arch/x86/kernel/i8259.c): mask all, ICW1-4 to the master then the slave, then the masks.
init_8259A:
    mov al, 0xff                        # mask every line while reprogramming
    out PIC_MASTER_IMR, al
    out PIC_SLAVE_IMR, al
    mov al, 0x11                        # ICW1: edge triggered, cascade, ICW4 follows
    out PIC_MASTER_CMD, al
    mov al, 0x20                        # ICW2: master IR0-7 -> vectors 0x20-0x27
    out PIC_MASTER_IMR, al
    mov al, 0x04                        # ICW3: the slave hangs on master IR2
    out PIC_MASTER_IMR, al
    mov al, 0x01                        # ICW4: 8086 mode, normal EOI
    out PIC_MASTER_IMR, al
    mov al, 0x11                        # ICW1 (slave)
    out PIC_SLAVE_CMD, al
    mov al, 0x28                        # ICW2: slave IR0-7 -> vectors 0x28-0x2f (IRQ 14 = 0x2e)
    out PIC_SLAVE_IMR, al
    mov al, 0x02                        # ICW3: slave identity 2
    out PIC_SLAVE_IMR, al
    mov al, 0x01                        # ICW4 (slave)
    out PIC_SLAVE_IMR, al
    mov al, 0xfb                        # OCW1 master: only IR2 (the cascade) open
    out PIC_MASTER_IMR, al
    mov al, 0xbf                        # OCW1 slave: only IR6 = IRQ 14 open
    out PIC_SLAVE_IMR, al
    ret

# IRQ 14: ata_sff_interrupt -> __ata_sff_port_intr -> ata_sff_irq_status. Reading the status register
# acknowledges the drive (it lowers INTRQ); the driver code above acts on the status we store.
# (libata peeks at altstatus first to skip a busy drive; we always read status once.)
# Then end-of-interrupt to the slave and the master, as mask_and_ack_8259A does for a slave IRQ.
irq14_handler:
    push rax
    push rdx
    push rbp
    mov rbp, RESULT
    mov dx, ATA_STATUS
    in al, dx
    movzx eax, al
    mov dword ptr [rbp + R_IRQ_STATUS], eax
    inc dword ptr [rbp + R_IRQS]
    mov al, PIC_EOI
    out PIC_SLAVE_CMD, al
    out PIC_MASTER_CMD, al
    pop rbp
    pop rdx
    pop rax
    iretq

# Anything else is a bug or a surprise: record the vector and stop (the error code, if any, is left).
unexpected_vector:
    push VECTOR_OTHER
exception_common:
    pop rax
    mov rbp, RESULT
    mov dword ptr [rbp + R_VECTOR], eax
    jmp halt_forever

# One stub per vector 0x00-0x2f (but 0x2e): push the vector number for exception_common.
exc_00:  push 0x00; jmp exception_common
exc_01:  push 0x01; jmp exception_common
exc_02:  push 0x02; jmp exception_common
exc_03:  push 0x03; jmp exception_common
exc_04:  push 0x04; jmp exception_common
exc_05:  push 0x05; jmp exception_common
exc_06:  push 0x06; jmp exception_common
exc_07:  push 0x07; jmp exception_common
exc_08:  push 0x08; jmp exception_common
exc_09:  push 0x09; jmp exception_common
exc_0a:  push 0x0a; jmp exception_common
exc_0b:  push 0x0b; jmp exception_common
exc_0c:  push 0x0c; jmp exception_common
exc_0d:  push 0x0d; jmp exception_common
exc_0e:  push 0x0e; jmp exception_common
exc_0f:  push 0x0f; jmp exception_common
exc_10:  push 0x10; jmp exception_common
exc_11:  push 0x11; jmp exception_common
exc_12:  push 0x12; jmp exception_common
exc_13:  push 0x13; jmp exception_common
exc_14:  push 0x14; jmp exception_common
exc_15:  push 0x15; jmp exception_common
exc_16:  push 0x16; jmp exception_common
exc_17:  push 0x17; jmp exception_common
exc_18:  push 0x18; jmp exception_common
exc_19:  push 0x19; jmp exception_common
exc_1a:  push 0x1a; jmp exception_common
exc_1b:  push 0x1b; jmp exception_common
exc_1c:  push 0x1c; jmp exception_common
exc_1d:  push 0x1d; jmp exception_common
exc_1e:  push 0x1e; jmp exception_common
exc_1f:  push 0x1f; jmp exception_common
exc_20:  push 0x20; jmp exception_common
exc_21:  push 0x21; jmp exception_common
exc_22:  push 0x22; jmp exception_common
exc_23:  push 0x23; jmp exception_common
exc_24:  push 0x24; jmp exception_common
exc_25:  push 0x25; jmp exception_common
exc_26:  push 0x26; jmp exception_common
exc_27:  push 0x27; jmp exception_common
exc_28:  push 0x28; jmp exception_common
exc_29:  push 0x29; jmp exception_common
exc_2a:  push 0x2a; jmp exception_common
exc_2b:  push 0x2b; jmp exception_common
exc_2c:  push 0x2c; jmp exception_common
exc_2d:  push 0x2d; jmp exception_common
exc_2f:  push 0x2f; jmp exception_common

# ---- data --------------------------------------------------------------------------------------------
    .align 8
interrupt_handlers:
    .quad exc_00, exc_01, exc_02, exc_03, exc_04, exc_05, exc_06, exc_07    # vectors 0x00-0x07
    .quad exc_08, exc_09, exc_0a, exc_0b, exc_0c, exc_0d, exc_0e, exc_0f    # vectors 0x08-0x0f
    .quad exc_10, exc_11, exc_12, exc_13, exc_14, exc_15, exc_16, exc_17    # vectors 0x10-0x17
    .quad exc_18, exc_19, exc_1a, exc_1b, exc_1c, exc_1d, exc_1e, exc_1f    # vectors 0x18-0x1f
    .quad exc_20, exc_21, exc_22, exc_23, exc_24, exc_25, exc_26, exc_27    # vectors 0x20-0x27
    .quad exc_28, exc_29, exc_2a, exc_2b, exc_2c, exc_2d, irq14_handler, exc_2f    # vectors 0x28-0x2f
idt_descriptor:
    .word 256 * 16 - 1
    .quad IDT_BASE
