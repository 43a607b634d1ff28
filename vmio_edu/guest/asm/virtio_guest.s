# The vmio-edu virtio guest: a virtio-blk driver in the order Linux 3.7 uses (x86-64, keystone syntax).
#
# Read it next to drivers/virtio/virtio_pci.c, virtio_ring.c, virtio.c and drivers/block/virtio_blk.c
# (Linux 3.7). Each part names the function it stands for. Before the driver, a few lines do what the
# firmware (SeaBIOS's pciinit.c) does on a real PC: give BAR 0 an I/O address, route the PCI interrupt
# lines, enable the device. Every IN/OUT below is one exit to the VMM; the rings are plain memory the
# device reads and writes without any exit.
#
# The host fills the parameter block at PARAMS, starts the vCPU at 0x1000 in long mode (identity-mapped
# RAM, RSP = 0x8000) and reads the result block at RESULT once the guest halts with `cli; hlt`.
#
# Simplifications, each on purpose: the driver takes EVENT_IDX, and indirect descriptors only when asked
# (P_FLAGS bit 1; Linux 3.7 takes both, and the polling variant neither, as SeaBIOS), and serves a
# request queue in batches: it publishes up to P_DEPTH requests, kicks once, and waits until all of
# them are used before the next batch (Linux refills as requests complete).
#
# Keystone note: memory is always addressed through a register ([rbx + P_LBA]); keystone 0.9.2
# mis-encodes some absolute operands ([0x9000]) in 64-bit mode.

# ---- guest memory map (guest-physical = virtual) ----------------------------------------------------------
.equ CODE,          0x1000      # this program is loaded and entered here
.equ PARAMS,        0x9000      # parameter block, written by the host before the start
.equ RESULT,        0x9100      # result block, read by the host after the final hlt
.equ DRV,           0x9200      # the driver's own state (struct virtio_pci_device + vring_virtqueue)
.equ IDT_BASE,      0xa000      # the IDT: 256 gates x 16 bytes
.equ BUFFER,        0x10000     # default data buffer: up to 256 sectors = 128 KiB
.equ BUFFER2,       0x30000     # default read-back buffer for op 3
.equ VRING,         0x50000     # the virtqueue (desc table, avail ring, then the used ring a page later)
.equ VRING_BYTES,   0x3000      # zeroed before use (vring_size(128, 4096) = 0x1406)
.equ HDRS,          0x54000     # struct virtio_blk_outhdr of request slot j at HDRS + 16*j
.equ STATUS,        0x55000     # status byte of request slot j at STATUS + 16*j
.equ INDIRECT,      0x56000     # indirect descriptor table of request slot j at INDIRECT + 48*j
.equ MAX_SLOTS,     128         # requests in flight at most (HDRS/STATUS hold 256, INDIRECT 128 tables)
.equ OUT_OF_RAM,    0x40000000  # a guest-physical address past RAM (fault 1)

# ---- parameter block (PARAMS + offset) --------------------------------------------------------------------
.equ P_OP,          0x00        # u32: 1 write, 2 read, 3 write then read back, 5 one request of type P_COMMAND
.equ P_LBA,         0x04        # u32: first sector
.equ P_COUNT,       0x08        # u32: sectors, 1..256 (0 means 256)
.equ P_FLAGS,       0x0c        # u32: bit 0 = polling (interrupts off, VRING_AVAIL_F_NO_INTERRUPT), bit 1 = indirect
.equ P_BUFFER,      0x10        # u64: data buffer (write source, read destination)
.equ P_BUFFER2,     0x18        # u64: read-back destination for op 3
.equ P_COMMAND,     0x20        # u32: the request type for op 5 (virtio_blk_outhdr.type)
.equ P_PER_REQ,     0x24        # u32: sectors per request, 0 = all in one request
.equ P_DEPTH,       0x28        # u32: requests published per kick (queue depth), 0 = as many as fit
.equ P_FAULT,       0x2c        # u32: break every request on purpose (see FAULT_*)

.equ OP_WRITE,      1
.equ OP_READ,       2
.equ OP_WRITE_READ, 3
.equ OP_RAW,        5
.equ FLAG_POLLING,  0x01
.equ FLAG_INDIRECT, 0x02        # take VIRTIO_RING_F_INDIRECT_DESC: each request's chain in a table of its own
.equ FAULT_NONE,        0
.equ FAULT_DESC_OUT_OF_RAM, 1   # the data descriptor points past RAM
.equ FAULT_LOOP,        2       # the status descriptor chains back to the head
.equ FAULT_BAD_HEAD,    3       # the avail ring names a descriptor past the table
.equ FAULT_ZERO_LEN,    4       # the data descriptor has length 0

# ---- result block (RESULT + offset), u32 unless said --------------------------------------------------------
.equ R_DONE,        0x00        # DONE_MAGIC once the program reached its end
.equ R_STATUS,      0x04        # the first bad status byte a request came back with (0 if none)
.equ R_ERROR,       0x08        # how many requests came back with a status other than VIRTIO_BLK_S_OK
.equ R_IRQS,        0x0c        # interrupts the handler took (vp_interrupt)
.equ R_SECTORS,     0x10        # sectors moved by requests that completed OK (a write-read counts both)
.equ R_VECTOR,      0x14        # vector of the last unexpected exception/interrupt, 0xff for none
.equ R_IRQ_STATUS,  0x18        # the ISR value the handler read last (reading it acknowledged the IRQ)
.equ R_OUTCOME,     0x1c        # 0 ok, 1 a request failed, 2 protocol (no device, bad queue), 3 bad params,
                                # 4 a write refused because the disk is read-only (no request sent)
.equ R_REQUESTS,    0x20        # requests completed (used ring entries reaped)
.equ R_KICKS,       0x24        # notifies written to QUEUE_NOTIFY (vp_notify)
.equ R_CAPACITY,    0x28        # u64: the disk's capacity in sectors, from the config space
.equ R_FEATURES,    0x30        # the device's feature bits (HOST_FEATURES)
.equ R_IRQ_LINE,    0x34        # PCI interrupt line: the ISA IRQ the device's INTA# reaches
.equ R_IOBASE,      0x38        # BAR 0: the I/O base of the virtio header
.equ R_BAR_SIZE,    0x3c        # BAR 0's size, found by writing all ones
.equ R_SEG_MAX,     0x40        # config seg_max (VIRTIO_BLK_F_SEG_MAX), 0 if not negotiated
.equ R_BLK_SIZE,    0x44        # config blk_size (VIRTIO_BLK_F_BLK_SIZE), 0 if not negotiated
.equ R_OPT_IO_SIZE, 0x48        # config opt_io_size (VIRTIO_BLK_F_TOPOLOGY), 0 if not negotiated
.equ R_WCE,         0x4c        # config wce (VIRTIO_BLK_F_CONFIG_WCE): 1 = the host caches writes
.equ R_READ_ONLY,   0x50        # 1: the device offered VIRTIO_BLK_F_RO and virtblk_probe made the disk read-only
.equ RESULT_DWORDS, 21

.equ DONE_MAGIC,    0x454e4f44  # "DONE" in memory
.equ NO_VECTOR,     0xff
.equ VECTOR_OTHER,  0xfe
.equ OUTCOME_OK,           0
.equ OUTCOME_DEVICE_ERROR, 1
.equ OUTCOME_PROTOCOL,     2
.equ OUTCOME_BAD_PARAMS,   3
.equ OUTCOME_READ_ONLY,    4

# ---- driver state (DRV + offset) ----------------------------------------------------------------------------
.equ D_BDF,         0x00        # u32: config address of the device (0x80000000 | devfn << 8)
.equ D_IOBASE,      0x04        # u32: BAR 0 (vp_dev->ioaddr)
.equ D_NUM,         0x08        # u32: queue size
.equ D_AVAIL_IDX,   0x0c        # u32: the avail idx published so far
.equ D_LAST_USED,   0x10        # u32: last_used_idx: used entries reaped so far
.equ D_NUM_ADDED,   0x14        # u32: buffers added since the last kick
.equ D_MAX_SLOTS,   0x18        # u32: requests that fit the table at once (3 descriptors each)
.equ D_FEATURES,    0x1c        # u32: the negotiated features (vdev->features[0])
.equ D_DESC,        0x20        # u64: vring.desc
.equ D_AVAIL,       0x28        # u64: vring.avail
.equ D_USED,        0x30        # u64: vring.used

# ---- PCI, virtio-pci and virtio-blk constants (include/linux/pci_regs.h, virtio_pci.h, virtio_blk.h) ---
.equ PCI_CONF_ADDR,     0xcf8
.equ PCI_CONF_DATA,     0xcfc
.equ PCI_ENABLE,        0x80000000
.equ PCI_COMMAND,       0x04
.equ PCI_REVISION_ID,   0x08
.equ PCI_BAR0,          0x10
.equ PCI_SUBSYSTEM,     0x2c    # subsystem vendor (low word), subsystem id (high word)
.equ PCI_INTERRUPT_LINE, 0x3c
.equ PCI_COMMAND_IO,    0x1
.equ PCI_COMMAND_MASTER, 0x4
.equ VIRTIO_VENDOR_DEVICE, 0x10011af4   # 1af4:1001, virtio-blk (legacy)
.equ VIRTIO_ID_BLOCK,   2
.equ PIIX3_PIRQC,       0x80000860      # PIIX3 at 00:01.0, PIRQ routing registers 0x60-0x63
.equ PIRQ_ROUTE,        0x0b0b0a0a      # PIRQA-D -> IRQ 10, 10, 11, 11 (SeaBIOS's pci_irqs)
.equ ELCR2,             0x4d1           # edge/level control for IRQ 8-15
.equ ELCR2_LEVEL,       0x0c            # IRQ 10 and 11 level-triggered, as PCI INTx is
.equ VIRTIO_IOBASE,     0xc000          # where the firmware puts BAR 0 (SeaBIOS starts I/O BARs there)

.equ VIRTIO_PCI_HOST_FEATURES,  0
.equ VIRTIO_PCI_GUEST_FEATURES, 4
.equ VIRTIO_PCI_QUEUE_PFN,      8
.equ VIRTIO_PCI_QUEUE_NUM,      12
.equ VIRTIO_PCI_QUEUE_SEL,      14
.equ VIRTIO_PCI_QUEUE_NOTIFY,   16
.equ VIRTIO_PCI_STATUS,         18
.equ VIRTIO_PCI_ISR,            19
.equ VIRTIO_PCI_CONFIG,         20      # device config without MSI-X
.equ VIRTIO_CONFIG_S_ACKNOWLEDGE, 1
.equ VIRTIO_CONFIG_S_DRIVER,      2
.equ VIRTIO_CONFIG_S_DRIVER_OK,   4
.equ DRIVER_FEATURES,   0x0e74  # SEG_MAX(2) GEOMETRY(4) RO(5) BLK_SIZE(6) WCE(9) TOPOLOGY(10) CONFIG_WCE(11)
.equ F_RO,              0x0020  # VIRTIO_BLK_F_RO (5): the host's disk is read-only
.equ F_CONFIG_WCE,      0x0800
.equ F_EVENT_IDX,       0x20000000      # VIRTIO_RING_F_EVENT_IDX (29): the interrupt-driven driver takes it
.equ F_INDIRECT_DESC,   0x10000000      # VIRTIO_RING_F_INDIRECT_DESC (28): taken with FLAG_INDIRECT
.equ VRING_DESC_F_INDIRECT, 4
.equ CFG_WCE,           32
.equ F_SEG_MAX,         0x0004
.equ F_BLK_SIZE,        0x0040
.equ F_TOPOLOGY,        0x0400
.equ CFG_CAPACITY,      0       # offsets in struct virtio_blk_config
.equ CFG_SEG_MAX,       12
.equ CFG_BLK_SIZE,      20
.equ CFG_PHYS_BLOCK_EXP, 24
.equ CFG_ALIGNMENT_OFFSET, 25
.equ CFG_MIN_IO_SIZE,   26
.equ CFG_OPT_IO_SIZE,   28
.equ VRING_DESC_F_NEXT,  1
.equ VRING_DESC_F_WRITE, 2
.equ VRING_USED_F_NO_NOTIFY,     1
.equ VRING_AVAIL_F_NO_INTERRUPT, 1
.equ VIRTIO_BLK_T_IN,   0
.equ VIRTIO_BLK_T_OUT,  1
.equ STATUS_UNSET,      0xff    # what the status byte holds until the device writes it

# ---- 8259 PIC and the virtio IRQ ----------------------------------------------------------------------------
.equ PIC_MASTER_CMD, 0x20
.equ PIC_MASTER_IMR, 0x21
.equ PIC_SLAVE_CMD,  0xa0
.equ PIC_SLAVE_IMR,  0xa1
.equ PIC_EOI,        0x20
.equ VIRTIO_VECTOR,  0x2b       # IRQ 11: slave base 0x28 + IR3

# Register use: rbx = PARAMS, rbp = RESULT, r12 = DRV, r13d = sectors of the transfer, r14 = its buffer,
# r15d = the request type. virtqueue_add_buf takes r9d = request slot, r8d = sectors before this request,
# r10d = sectors in it.

# ==============================================================================================================
start:
    cli
    cld
    mov rbx, PARAMS
    mov rbp, RESULT
    mov r12, DRV
    call init_result
    call setup_idt
    call init_8259A

    mov eax, dword ptr [rbx + P_COUNT]
    cmp eax, 256
    ja bad_params
    mov eax, dword ptr [rbx + P_OP]
    cmp eax, OP_WRITE
    je params_ok
    cmp eax, OP_READ
    je params_ok
    cmp eax, OP_WRITE_READ
    je params_ok
    cmp eax, OP_RAW
    jne bad_params
params_ok:
    call pci_bios_setup                 # the firmware's part
    call virtio_pci_probe               # the driver's
    call virtblk_probe
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jnz interrupts_stay_off
    sti                                 # request_irq done: take interrupts from here on
interrupts_stay_off:

    mov eax, dword ptr [rbx + P_OP]
    cmp eax, OP_WRITE
    je op_write
    cmp eax, OP_READ
    je op_read
    cmp eax, OP_WRITE_READ
    je op_write_read
    jmp op_raw

bad_params:
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_BAD_PARAMS
    jmp finish

op_write:
    cmp dword ptr [rbp + R_READ_ONLY], 0
    jne write_refused
    call sector_count
    mov r14, qword ptr [rbx + P_BUFFER]
    mov r15d, VIRTIO_BLK_T_OUT
    call virtblk_request
    jmp finish

op_read:
    call sector_count
    mov r14, qword ptr [rbx + P_BUFFER]
    mov r15d, VIRTIO_BLK_T_IN
    call virtblk_request
    jmp finish

op_write_read:
    cmp dword ptr [rbp + R_READ_ONLY], 0
    jne write_refused
    call sector_count
    mov r14, qword ptr [rbx + P_BUFFER]
    mov r15d, VIRTIO_BLK_T_OUT
    call virtblk_request
    cmp dword ptr [rbp + R_ERROR], 0    # read back only what was written
    jne finish
    call sector_count
    mov r14, qword ptr [rbx + P_BUFFER2]
    mov r15d, VIRTIO_BLK_T_IN
    call virtblk_request
    jmp finish

# A read-only disk (set_disk_ro in virtblk_probe) refuses a writer when it opens the disk for writing:
# Linux 3.7's blkdev_get_by_path returns -EACCES for FMODE_WRITE (fs/block_dev.c:1325), which is what a
# read-write mount gets (mount_bdev); no request is built, nothing reaches the device. (3.7 checks nowhere
# else: generic_make_request_checks has no read-only test, so op_raw's request, like a write through a raw
# O_RDWR open of /dev/vda, still goes to the device, which answers VIRTIO_BLK_S_IOERR.)
write_refused:
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_READ_ONLY
    jmp finish

op_raw:
    call sector_count
    mov r14, qword ptr [rbx + P_BUFFER]
    mov r15d, dword ptr [rbx + P_COMMAND]
    call virtblk_request
    jmp finish

finish:
    cmp dword ptr [rbp + R_ERROR], 0
    je finish_done
    cmp dword ptr [rbp + R_OUTCOME], OUTCOME_OK
    jne finish_done
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_DEVICE_ERROR
finish_done:
    mov dword ptr [rbp + R_DONE], DONE_MAGIC
halt_forever:
    cli
    hlt
    jmp halt_forever

protocol_error:                         # no device, a queue that can't be used: the probe fails
    mov dword ptr [rbp + R_OUTCOME], OUTCOME_PROTOCOL
    jmp finish_done

sector_count:                           # r13d = P_COUNT, 0 meaning 256
    mov r13d, dword ptr [rbx + P_COUNT]
    and r13d, 0x1ff
    jnz sector_count_done
    mov r13d, 256
sector_count_done:
    ret

init_result:
    mov rdi, rbp
    mov ecx, RESULT_DWORDS
    xor eax, eax
    rep stosd
    mov dword ptr [rbp + R_VECTOR], NO_VECTOR
    mov rdi, r12
    mov ecx, 16
    rep stosd
    ret

# ==============================================================================================================
# PCI configuration mechanism #1 (arch/x86/pci/direct.c pci_conf1_read/write): the address to 0xcf8 as one
# dword, then the data through 0xcfc + (reg & 3).  eax = PCI_ENABLE | devfn << 8 | reg.
pci_read_config_dword:                  # -> eax
    mov dx, PCI_CONF_ADDR
    out dx, eax
    mov dx, PCI_CONF_DATA
    in eax, dx
    ret

pci_write_config_dword:                 # ecx = value
    mov dx, PCI_CONF_ADDR
    out dx, eax
    mov dx, PCI_CONF_DATA
    mov eax, ecx
    out dx, eax
    ret

pci_write_config_word:                  # cx = value; reg must be even
    push rax
    and eax, 0xfffffffc
    mov dx, PCI_CONF_ADDR
    out dx, eax
    pop rax
    and eax, 3
    mov dx, PCI_CONF_DATA
    add dx, ax
    mov ax, cx
    out dx, ax
    ret

pci_write_config_byte:                  # cl = value
    push rax
    and eax, 0xfffffffc
    mov dx, PCI_CONF_ADDR
    out dx, eax
    pop rax
    and eax, 3
    mov dx, PCI_CONF_DATA
    add dx, ax
    mov al, cl
    out dx, al
    ret

# ==============================================================================================================
# The firmware's part (SeaBIOS pciinit.c), for the device the scan finds:
#   pci_probe_devices: find 1af4:1001 on bus 0 (reading each slot's vendor/device dword);
#   piix_isa_bridge_setup: route PIRQA-D to IRQ 10, 10, 11, 11 and make those IRQs level-triggered;
#   pci_bios_map_devices: size BAR 0 (write all ones, read back) and give it an I/O address;
#   pci_bios_init_device: interrupt line = the IRQ the device's pin is routed to; enable I/O decoding.
pci_bios_setup:
    xor r8d, r8d                        # slot
pci_scan:
    mov eax, r8d
    shl eax, 11                         # devfn = slot << 3, at bit 8
    or eax, PCI_ENABLE
    mov dword ptr [r12 + D_BDF], eax
    call pci_read_config_dword
    cmp eax, VIRTIO_VENDOR_DEVICE
    je pci_found
    inc r8d
    cmp r8d, 32
    jb pci_scan
    jmp protocol_error                  # no virtio-blk on the bus
pci_found:
    # piix_isa_bridge_setup
    mov eax, PIIX3_PIRQC
    mov ecx, PIRQ_ROUTE
    call pci_write_config_dword
    mov dx, ELCR2
    mov al, ELCR2_LEVEL
    out dx, al
    # pci_bios_map_devices: BAR 0 sizing, then its address
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_BAR0
    mov ecx, 0xffffffff
    call pci_write_config_dword
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_BAR0
    call pci_read_config_dword
    and eax, 0xfffffffc                 # an I/O BAR: the low 2 bits are flags
    neg eax
    and eax, 0xffff                     # I/O decodes 16 bits
    mov dword ptr [rbp + R_BAR_SIZE], eax
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_BAR0
    mov ecx, VIRTIO_IOBASE
    call pci_write_config_dword
    # pci_bios_init_device: the pin's route. PIRQ = (pin - 1 + slot - 1) & 3, IRQ from PIRQ_ROUTE.
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_INTERRUPT_LINE
    call pci_read_config_dword          # byte 1 = interrupt pin (1 = INTA#)
    shr eax, 8
    movzx eax, al
    dec eax
    add eax, r8d
    dec eax
    and eax, 3
    lea ecx, [rax*8]
    mov eax, PIRQ_ROUTE
    shr eax, cl
    movzx ecx, al                       # the IRQ
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_INTERRUPT_LINE
    call pci_write_config_byte
    # enable I/O decoding and bus mastering (pci_enable_device + pci_set_master in Linux)
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_COMMAND
    mov ecx, PCI_COMMAND_IO | PCI_COMMAND_MASTER
    call pci_write_config_word
    ret

# ==============================================================================================================
# virtio_pci_probe (drivers/virtio/virtio_pci.c): check the ABI revision and the subsystem id (the virtio
# device type), take BAR 0 and the IRQ line; then register_virtio_device: reset (status 0) and
# ACKNOWLEDGE; virtio_dev_probe: DRIVER, read the device's features, finalize ours.
virtio_pci_probe:
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_REVISION_ID
    call pci_read_config_dword
    test al, al                         # VIRTIO_PCI_ABI_VERSION 0
    jnz protocol_error
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_SUBSYSTEM
    call pci_read_config_dword
    shr eax, 16
    cmp eax, VIRTIO_ID_BLOCK
    jne protocol_error
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_BAR0
    call pci_read_config_dword          # pci_iomap(pci_dev, 0, 0)
    and eax, 0xfffc
    mov dword ptr [r12 + D_IOBASE], eax
    mov dword ptr [rbp + R_IOBASE], eax
    mov eax, dword ptr [r12 + D_BDF]
    or eax, PCI_INTERRUPT_LINE
    call pci_read_config_dword          # pci_dev->irq
    movzx eax, al
    mov dword ptr [rbp + R_IRQ_LINE], eax
    # vp_reset (status 0, then a status read to flush it), then add_status(ACKNOWLEDGE) and
    # add_status(DRIVER): vp_get_status | bit, vp_set_status
    xor eax, eax
    call vp_set_status
    in al, dx
    mov cl, VIRTIO_CONFIG_S_ACKNOWLEDGE
    call add_status
    mov cl, VIRTIO_CONFIG_S_DRIVER
    call add_status
    # vp_get_features, then vp_finalize_features with the driver's feature table
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_HOST_FEATURES
    in eax, dx
    mov dword ptr [rbp + R_FEATURES], eax
    mov ecx, DRIVER_FEATURES
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jnz virtio_pci_probe_features       # a polling driver asks for no ring features, as SeaBIOS
    or ecx, F_EVENT_IDX
    test dword ptr [rbx + P_FLAGS], FLAG_INDIRECT
    jz virtio_pci_probe_features
    or ecx, F_INDIRECT_DESC
virtio_pci_probe_features:
    and eax, ecx
    mov dword ptr [r12 + D_FEATURES], eax
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_GUEST_FEATURES
    out dx, eax
    ret

vp_set_status:                          # al = status
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_STATUS
    out dx, al
    ret

add_status:                             # cl = bit to add
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_STATUS
    in al, dx
    or al, cl
    out dx, al
    ret

# virtblk_probe, in Linux 3.7's order: seg_max (before the queue exists), init_vq (vp_find_vqs ->
# setup_vq), the cache mode (config wce), read-only (VIRTIO_BLK_F_RO: set_disk_ro), the capacity, then the
# block size and the topology; each field only if its feature was negotiated (virtio_config_val).
# virtio_dev_probe then adds DRIVER_OK.
virtblk_probe:
    test dword ptr [r12 + D_FEATURES], F_SEG_MAX
    jz virtblk_probe_vq
    mov edi, CFG_SEG_MAX
    mov ecx, 4
    call vp_get
    mov dword ptr [rbp + R_SEG_MAX], r8d
virtblk_probe_vq:
    call vp_find_vqs
    test dword ptr [r12 + D_FEATURES], F_CONFIG_WCE
    jz virtblk_probe_capacity
    mov edi, CFG_WCE                    # virtblk_update_cache_mode: writeback or writethrough
    mov ecx, 1
    call vp_get
    mov dword ptr [rbp + R_WCE], r8d
virtblk_probe_capacity:
    test dword ptr [r12 + D_FEATURES], F_RO   # "If disk is read-only in the host, the guest should obey"
    jz virtblk_probe_capacity_read
    mov dword ptr [rbp + R_READ_ONLY], 1      # set_disk_ro(vblk->disk, 1)
virtblk_probe_capacity_read:
    mov edi, CFG_CAPACITY               # "Host must always specify the capacity."
    mov ecx, 8
    call vp_get
    mov qword ptr [rbp + R_CAPACITY], r8
    test dword ptr [r12 + D_FEATURES], F_BLK_SIZE
    jz virtblk_probe_topology
    mov edi, CFG_BLK_SIZE
    mov ecx, 4
    call vp_get
    mov dword ptr [rbp + R_BLK_SIZE], r8d
virtblk_probe_topology:
    test dword ptr [r12 + D_FEATURES], F_TOPOLOGY
    jz virtblk_probe_done
    mov edi, CFG_PHYS_BLOCK_EXP
    mov ecx, 1
    call vp_get
    mov edi, CFG_ALIGNMENT_OFFSET
    mov ecx, 1
    call vp_get
    mov edi, CFG_MIN_IO_SIZE
    mov ecx, 2
    call vp_get
    mov edi, CFG_OPT_IO_SIZE
    mov ecx, 4
    call vp_get
    mov dword ptr [rbp + R_OPT_IO_SIZE], r8d
virtblk_probe_done:
    mov cl, VIRTIO_CONFIG_S_DRIVER_OK
    call add_status
    ret

# vp_get: ecx bytes of the device config at offset edi, one ioread8 each, as Linux 3.7 reads them.
#  -> r8 (little-endian)
vp_get:
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_CONFIG
    add edx, edi
    xor r8d, r8d
    shl ecx, 3                          # bits to read
    mov r9d, ecx
    xor ecx, ecx
vp_get_byte:
    in al, dx
    movzx eax, al
    shl rax, cl
    or r8, rax
    inc edx
    add ecx, 8
    cmp ecx, r9d
    jb vp_get_byte
    ret

# vp_find_vqs -> vp_try_to_find_vqs (no MSI-X: one shared INTx handler, vp_interrupt) -> setup_vq:
# select queue 0, read its size, check it is not active yet, lay out the ring (vring_init), write its PFN.
vp_find_vqs:
setup_vq:
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_QUEUE_SEL
    xor eax, eax
    out dx, ax
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_QUEUE_NUM
    in ax, dx
    movzx eax, ax
    test eax, eax
    jz protocol_error                   # the queue does not exist
    mov dword ptr [r12 + D_NUM], eax
    test dword ptr [r12 + D_FEATURES], F_INDIRECT_DESC
    jnz setup_vq_slots                  # indirect: one ring descriptor per request
    xor edx, edx
    mov ecx, 3
    div ecx                             # direct: three per request
setup_vq_slots:
    cmp eax, MAX_SLOTS
    jbe setup_vq_slots_ok
    mov eax, MAX_SLOTS
setup_vq_slots_ok:
    mov dword ptr [r12 + D_MAX_SLOTS], eax
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_QUEUE_PFN
    in eax, dx
    test eax, eax
    jnz protocol_error                  # already active: -ENOENT
    # vring_init: desc at VRING, avail after num descriptors, used at the next 4096 boundary past
    # avail->ring[num] and used_event
    mov rdi, VRING
    mov ecx, VRING_BYTES / 8
    xor eax, eax
    rep stosq
    mov rax, VRING
    mov qword ptr [r12 + D_DESC], rax
    mov ecx, dword ptr [r12 + D_NUM]
    shl ecx, 4
    add rax, rcx
    mov qword ptr [r12 + D_AVAIL], rax
    mov ecx, dword ptr [r12 + D_NUM]
    lea rax, [rax + rcx*2 + 4 + 2 + 4095]
    and rax, -4096
    mov qword ptr [r12 + D_USED], rax
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jz setup_vq_pfn
    mov rax, qword ptr [r12 + D_AVAIL]  # virtqueue_disable_cb: no interrupts wanted
    mov word ptr [rax], VRING_AVAIL_F_NO_INTERRUPT
setup_vq_pfn:
    mov eax, VRING >> 12
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_QUEUE_PFN
    out dx, eax
    ret

# ==============================================================================================================
# virtblk_request: turn the transfer (r13d sectors at P_LBA, buffer r14, type r15d) into requests of
# P_PER_REQ sectors, publish up to P_DEPTH of them (virtblk_add_req -> virtqueue_add_buf), kick once
# (virtqueue_kick), and wait until the device has used them all (virtblk_done) before the next batch.
virtblk_request:
    xor r8d, r8d                        # sectors already in requests
dvr_batch:
    cmp r8d, r13d
    jae dvr_done
    xor r9d, r9d                        # requests in this batch
dvr_add:
    mov eax, r13d
    sub eax, r8d
    mov ecx, dword ptr [rbx + P_PER_REQ]
    test ecx, ecx
    jz dvr_size
    cmp eax, ecx
    jbe dvr_size
    mov eax, ecx
dvr_size:
    mov r10d, eax
    call virtqueue_add_buf
    add r8d, r10d
    inc r9d
    cmp r8d, r13d
    jae dvr_kick
    mov ecx, dword ptr [rbx + P_DEPTH]
    mov eax, dword ptr [r12 + D_MAX_SLOTS]
    test ecx, ecx
    jz dvr_depth_max
    cmp ecx, eax
    jbe dvr_depth
dvr_depth_max:
    mov ecx, eax
dvr_depth:
    cmp r9d, ecx
    jb dvr_add
dvr_kick:
    call virtqueue_kick
    call virtblk_wait
    jmp dvr_batch
dvr_done:
    ret

# virtqueue_add_buf (drivers/virtio/virtio_ring.c): request slot r9d uses descriptors 3j..3j+2:
#   header (device reads) -> data (device reads for a write, writes for a read) -> status (device writes).
# The head goes into avail->ring[avail->idx % num], and avail->idx moves at once (Linux 3.7 publishes
# each buffer as it is added; the kick only decides whether to tell the device).
virtqueue_add_buf:
    imul r11d, r9d, 3                   # head descriptor index (direct chains: 3 per request)
    mov eax, r9d
    shl eax, 4
    mov rsi, HDRS
    add rsi, rax                        # the request's virtio_blk_outhdr
    mov rdx, STATUS
    add rdx, rax                        # its status byte
    mov dword ptr [rsi], r15d           # type
    mov dword ptr [rsi + 4], 0          # ioprio
    mov eax, dword ptr [rbx + P_LBA]
    add eax, r8d
    mov qword ptr [rsi + 8], rax        # sector
    mov byte ptr [rdx], STATUS_UNSET
    test dword ptr [r12 + D_FEATURES], F_INDIRECT_DESC
    jz add_buf_direct
    # vring_add_indirect: the three descriptors go in a table of the request's own (indices 0-2); the
    # ring's descriptor r9d points at it with VRING_DESC_F_INDIRECT
    mov rdi, qword ptr [r12 + D_DESC]
    mov eax, r9d
    shl eax, 4
    add rdi, rax                        # &desc[slot]
    imul eax, r9d, 48
    add rax, INDIRECT
    mov qword ptr [rdi], rax
    mov dword ptr [rdi + 8], 48
    mov word ptr [rdi + 12], VRING_DESC_F_INDIRECT
    mov word ptr [rdi + 14], 0
    mov rdi, rax                        # the table
    xor r11d, r11d
    jmp add_buf_chain
add_buf_direct:
    mov rdi, qword ptr [r12 + D_DESC]
    mov eax, r11d
    shl eax, 4
    add rdi, rax                        # &desc[head]
add_buf_chain:
    # desc[head]: the header
    mov qword ptr [rdi], rsi
    mov dword ptr [rdi + 8], 16
    mov word ptr [rdi + 12], VRING_DESC_F_NEXT
    lea eax, [r11 + 1]
    mov word ptr [rdi + 14], ax
    # desc[head + 1]: the data
    mov eax, r8d
    shl rax, 9
    add rax, r14
    cmp dword ptr [rbx + P_FAULT], FAULT_DESC_OUT_OF_RAM
    jne add_buf_data
    mov eax, OUT_OF_RAM
add_buf_data:
    mov qword ptr [rdi + 16], rax
    mov eax, r10d
    shl eax, 9
    cmp dword ptr [rbx + P_FAULT], FAULT_ZERO_LEN
    jne add_buf_len
    xor eax, eax
add_buf_len:
    mov dword ptr [rdi + 24], eax
    mov ax, VRING_DESC_F_NEXT
    test r15d, VIRTIO_BLK_T_OUT
    jnz add_buf_out
    or ax, VRING_DESC_F_WRITE           # a read: the device writes the data
add_buf_out:
    mov word ptr [rdi + 28], ax
    lea eax, [r11 + 2]
    mov word ptr [rdi + 30], ax
    # desc[head + 2]: the status
    mov qword ptr [rdi + 32], rdx
    mov dword ptr [rdi + 40], 1
    mov word ptr [rdi + 44], VRING_DESC_F_WRITE
    mov word ptr [rdi + 46], 0
    cmp dword ptr [rbx + P_FAULT], FAULT_LOOP
    jne add_buf_avail
    mov word ptr [rdi + 44], VRING_DESC_F_WRITE | VRING_DESC_F_NEXT
    mov word ptr [rdi + 46], r11w       # ... and back to the head: a loop
add_buf_avail:
    mov eax, dword ptr [r12 + D_AVAIL_IDX]
    xor edx, edx
    div dword ptr [r12 + D_NUM]         # edx = avail->idx % num: the next slot of the avail ring
    mov rdi, qword ptr [r12 + D_AVAIL]
    mov eax, r11d
    test dword ptr [r12 + D_FEATURES], F_INDIRECT_DESC
    jz add_buf_fault
    mov eax, r9d                        # indirect: the head is the request's one ring descriptor
add_buf_fault:
    cmp dword ptr [rbx + P_FAULT], FAULT_BAD_HEAD
    jne add_buf_head
    mov eax, dword ptr [r12 + D_NUM]    # a head past the table
add_buf_head:
    mov word ptr [rdi + rdx*2 + 4], ax
    sfence                              # virtio_wmb: the entry before the index that publishes it
    mov eax, dword ptr [r12 + D_AVAIL_IDX]
    inc eax
    and eax, 0xffff
    mov dword ptr [r12 + D_AVAIL_IDX], eax
    mov word ptr [rdi + 2], ax          # avail->idx++
    inc dword ptr [r12 + D_NUM_ADDED]
    ret

# virtqueue_kick: virtqueue_kick_prepare, then virtqueue_notify -> vp_notify (the queue's index to
# QUEUE_NOTIFY, one 16-bit OUT) if it said so. With VIRTIO_RING_F_EVENT_IDX the device asks for a kick
# through avail_event (the u16 after the used ring): kick if it lies in [old, new) of this batch
# (vring_need_event); without it, unless the device set VRING_USED_F_NO_NOTIFY.
virtqueue_kick:
    mfence                              # virtio_mb: the entries out before avail_event is read
    mov ecx, dword ptr [r12 + D_AVAIL_IDX]      # new
    mov edx, ecx
    sub edx, dword ptr [r12 + D_NUM_ADDED]      # old
    mov dword ptr [r12 + D_NUM_ADDED], 0
    mov rdi, qword ptr [r12 + D_USED]
    test dword ptr [r12 + D_FEATURES], F_EVENT_IDX
    jz virtqueue_kick_flags
    mov eax, dword ptr [r12 + D_NUM]
    movzx eax, word ptr [rdi + rax*8 + 4]       # vring_avail_event
    mov esi, ecx
    sub esi, eax
    dec esi
    and esi, 0xffff                     # (u16)(new - event - 1)
    sub ecx, edx
    and ecx, 0xffff                     # (u16)(new - old)
    cmp esi, ecx
    jb vp_notify
    ret
virtqueue_kick_flags:
    test word ptr [rdi], VRING_USED_F_NO_NOTIFY
    jnz virtqueue_kick_skip
vp_notify:
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_QUEUE_NOTIFY
    xor eax, eax                        # queue 0
    out dx, ax
    inc dword ptr [rbp + R_KICKS]
virtqueue_kick_skip:
    ret

# Wait until every published request is used.
#  interrupts: sleep in hlt; vp_interrupt -> vring_interrupt -> virtblk_done reaps the used ring;
#  polling (SeaBIOS's virtio-blk): interrupts off, spin on used->idx (no exits), then reap.
virtblk_wait:
    test dword ptr [rbx + P_FLAGS], FLAG_POLLING
    jnz virtblk_poll
virtblk_wait_irq:
    cli
    mov eax, dword ptr [r12 + D_LAST_USED]
    cmp eax, dword ptr [r12 + D_AVAIL_IDX]
    je virtblk_wait_done
    sti                                 # sti delays interrupts by one instruction: no lost wake-up
    hlt
    jmp virtblk_wait_irq
virtblk_wait_done:
    sti
    ret
virtblk_poll:
    mov rsi, qword ptr [r12 + D_USED]
    mov ecx, dword ptr [r12 + D_AVAIL_IDX]
virtblk_poll_spin:
    pause
    movzx eax, word ptr [rsi + 2]       # vring_more_used
    cmp eax, ecx
    jne virtblk_poll_spin
virtblk_poll_reap:
    call virtqueue_get_buf
    jnz virtblk_poll_reap
    ret

# vring_interrupt: nothing to do unless the used ring moved (more_used); else the queue's callback,
# virtblk_done: loop { virtqueue_disable_cb; take every used buffer (virtqueue_get_buf) and complete its
# request } until virtqueue_enable_cb finds nothing new.
vring_interrupt:
    mov rsi, qword ptr [r12 + D_USED]
    movzx eax, word ptr [rsi + 2]
    cmp eax, dword ptr [r12 + D_LAST_USED]
    je vring_interrupt_none             # IRQ_NONE for this queue
virtblk_done:
    mov rdi, qword ptr [r12 + D_AVAIL]  # virtqueue_disable_cb
    or word ptr [rdi], VRING_AVAIL_F_NO_INTERRUPT
virtblk_done_next:
    call virtqueue_get_buf
    jnz virtblk_done_next
    mov rdi, qword ptr [r12 + D_AVAIL]  # virtqueue_enable_cb
    and word ptr [rdi], 0xfffe         # ~VRING_AVAIL_F_NO_INTERRUPT
    call vring_set_used_event
    mfence
    mov rsi, qword ptr [r12 + D_USED]
    movzx eax, word ptr [rsi + 2]
    cmp eax, dword ptr [r12 + D_LAST_USED]
    jne virtblk_done                    # more came in meanwhile: go round again
vring_interrupt_none:
    ret

# used_event (the u16 after the avail ring) = last_used_idx: "interrupt me after the next one".
vring_set_used_event:
    mov rdi, qword ptr [r12 + D_AVAIL]
    mov eax, dword ptr [r12 + D_NUM]
    mov ecx, dword ptr [r12 + D_LAST_USED]
    mov word ptr [rdi + rax*2 + 4], cx
    ret

# virtqueue_get_buf: the next used entry, if any (ZF clear: one taken; ZF set: none), and
# virtblk_request_done on it: the request slot is head / 3; its status byte says how it went.
virtqueue_get_buf:
    push r8
    mov rsi, qword ptr [r12 + D_USED]
    movzx eax, word ptr [rsi + 2]       # used->idx
    mov ecx, dword ptr [r12 + D_LAST_USED]
    cmp eax, ecx
    je virtqueue_get_buf_none
    mov eax, ecx                        # used->ring[last_used_idx % num]
    xor edx, edx
    div dword ptr [r12 + D_NUM]
    mov eax, dword ptr [rsi + rdx*8 + 4]    # id: the head
    mov r8d, dword ptr [rsi + rdx*8 + 8]    # len: bytes the device wrote (data + status)
virtblk_request_done:
    test dword ptr [r12 + D_FEATURES], F_INDIRECT_DESC
    jnz request_done_slot               # indirect: head = request slot
    xor edx, edx
    mov ecx, 3
    div ecx                             # direct: request slot = head / 3
request_done_slot:
    shl eax, 4
    mov rdi, STATUS
    movzx ecx, byte ptr [rdi + rax]
    test ecx, ecx
    jz request_done_ok
    inc dword ptr [rbp + R_ERROR]
    cmp dword ptr [rbp + R_STATUS], 0
    jne request_done_next
    mov dword ptr [rbp + R_STATUS], ecx
    jmp request_done_next
request_done_ok:
    mov eax, r8d
    dec eax
    shr eax, 9
    add dword ptr [rbp + R_SECTORS], eax
request_done_next:
    inc dword ptr [rbp + R_REQUESTS]
    mov eax, dword ptr [r12 + D_LAST_USED]
    inc eax
    and eax, 0xffff
    mov dword ptr [r12 + D_LAST_USED], eax
    mov rdi, qword ptr [r12 + D_AVAIL]  # unless interrupts are off: used_event = last_used_idx
    test word ptr [rdi], VRING_AVAIL_F_NO_INTERRUPT
    jnz virtqueue_get_buf_taken
    call vring_set_used_event
    mfence
virtqueue_get_buf_taken:
    pop r8
    or eax, 1                           # ZF clear: a buffer was taken
    ret
virtqueue_get_buf_none:
    pop r8
    xor eax, eax                        # ZF set: none
    ret

# ==============================================================================================================
# Interrupts. vp_interrupt (IRQ 11, vector 0x2b): reading ISR returns and clears it and lowers INTx; bit 0
# means the queue has used buffers (vring_interrupt). Then end-of-interrupt to the slave and the master.
vp_interrupt:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r12
    mov rbp, RESULT
    mov r12, DRV
    mov edx, dword ptr [r12 + D_IOBASE]
    add edx, VIRTIO_PCI_ISR
    in al, dx
    movzx eax, al
    mov dword ptr [rbp + R_IRQ_STATUS], eax
    inc dword ptr [rbp + R_IRQS]
    test al, 1
    jz vp_interrupt_eoi
    call vring_interrupt
vp_interrupt_eoi:
    mov al, PIC_EOI
    out PIC_SLAVE_CMD, al
    out PIC_MASTER_CMD, al
    pop r12
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

# The IDT: vectors 0x00-0x2f through `interrupt_handlers` (0x2b is vp_interrupt), 0x30-0xff one stub.
setup_idt:
    mov rdi, IDT_BASE
    xor ecx, ecx
    mov r8w, cs
setup_idt_gate:
    mov rax, unexpected_vector
    cmp ecx, 0x30
    jae setup_idt_write
    mov rax, qword ptr [rcx*8 + interrupt_handlers]
setup_idt_write:
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], r8w
    mov word ptr [rdi + 4], 0x8e00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    mov dword ptr [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 256
    jb setup_idt_gate
    mov rax, idt_descriptor
    lidt [rax]
    ret

# init_8259A, then open IRQ 11 on the slave (and the cascade on the master).
init_8259A:
    mov al, 0xff
    out PIC_MASTER_IMR, al
    out PIC_SLAVE_IMR, al
    mov al, 0x11
    out PIC_MASTER_CMD, al
    mov al, 0x20
    out PIC_MASTER_IMR, al
    mov al, 0x04
    out PIC_MASTER_IMR, al
    mov al, 0x01
    out PIC_MASTER_IMR, al
    mov al, 0x11
    out PIC_SLAVE_CMD, al
    mov al, 0x28
    out PIC_SLAVE_IMR, al
    mov al, 0x02
    out PIC_SLAVE_IMR, al
    mov al, 0x01
    out PIC_SLAVE_IMR, al
    mov al, 0xfb                        # master: only IR2 (the cascade)
    out PIC_MASTER_IMR, al
    mov al, 0xf7                        # slave: only IR3 = IRQ 11
    out PIC_SLAVE_IMR, al
    ret

unexpected_vector:
    push VECTOR_OTHER
exception_common:
    pop rax
    mov rbp, RESULT
    mov dword ptr [rbp + R_VECTOR], eax
    jmp halt_forever

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
exc_2c:  push 0x2c; jmp exception_common
exc_2d:  push 0x2d; jmp exception_common
exc_2e:  push 0x2e; jmp exception_common
exc_2f:  push 0x2f; jmp exception_common

# ---- data ----------------------------------------------------------------------------------------------------
    .align 8
interrupt_handlers:
    .quad exc_00, exc_01, exc_02, exc_03, exc_04, exc_05, exc_06, exc_07
    .quad exc_08, exc_09, exc_0a, exc_0b, exc_0c, exc_0d, exc_0e, exc_0f
    .quad exc_10, exc_11, exc_12, exc_13, exc_14, exc_15, exc_16, exc_17
    .quad exc_18, exc_19, exc_1a, exc_1b, exc_1c, exc_1d, exc_1e, exc_1f
    .quad exc_20, exc_21, exc_22, exc_23, exc_24, exc_25, exc_26, exc_27
    .quad exc_28, exc_29, exc_2a, vp_interrupt, exc_2c, exc_2d, exc_2e, exc_2f
idt_descriptor:
    .word 256 * 16 - 1
    .quad IDT_BASE
