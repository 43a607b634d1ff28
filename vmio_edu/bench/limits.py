"""The limits: the most each engine could do on this machine (a bare Unicorn OUT hook, a bare
KVM_RUN loop through ctypes), measured on a guest that only does `rep outsw` to port 0x1f0."""
from __future__ import annotations


import ctypes
import mmap
import time
from .common import LIMIT_BUF, LIMIT_PORT, SECTOR_WORDS, _rate


# The limit guests (x86-64, flat long mode, loaded at 0x1000). `reps` times 64 sectors of words.
_LIMIT_SRC = {
    "rep_outsw": """
        mov r8, {reps}
    outer:
        mov rsi, {buf}
        mov rcx, {words}
        mov dx, {port}
        rep outsw
        dec r8
        jnz outer
        hlt
    """,
    "out_loop": """
        mov r8, {reps}
    outer:
        mov rcx, {words}
        mov dx, {port}
    inner:
        out dx, ax
        dec rcx
        jnz inner
        dec r8
        jnz outer
        hlt
    """,
}


def limit_code(kind: str, reps: int) -> bytes:
    """The limit guest `kind` ("rep_outsw" or "out_loop"): `reps` x 64*256 word OUTs, then HLT."""
    from ..guest import assemble
    src = _LIMIT_SRC[kind].format(reps=reps, buf=LIMIT_BUF, words=64 * SECTOR_WORDS, port=LIMIT_PORT)
    return assemble(src, 64, 0x1000)


def unicorn_limit(kind: str = "rep_outsw", reps: int = 8, exit_each: bool = False) -> dict:
    """Run a limit guest on a bare Unicorn with a do-nothing OUT hook (raw ctypes callback, the way the
    CPU model installs its hooks). exit_each: the hook also calls uc_emu_stop and Python restarts the
    engine at the next instruction, as a VM exit to the hypervisor has to."""
    from unicorn import UC_HOOK_INSN, UC_MODE_64, UC_PROT_ALL
    from unicorn import x86_const as X
    from unicorn.unicorn_py3.arch.intel import HOOK_INSN_OUT_CFUNC

    from ..cpu.ucapi import new_uc, uc_hook_h, uclib

    code = limit_code(kind, reps)
    uc = new_uc(UC_MODE_64)  # Unicorn's 64-bit mode starts in flat long mode: no tables needed
    uc.mem_map(0, 2 << 20, UC_PROT_ALL)
    uc.mem_write(0x1000, code)
    uc.reg_write(X.UC_X86_REG_RSP, 0x8000)
    h = uc._uch
    seen = [0]
    stop = uclib.uc_emu_stop
    if exit_each:
        def on_out(handle, port, size, value, _ud):
            seen[0] += 1
            stop(handle)
    else:
        def on_out(handle, port, size, value, _ud):
            seen[0] += 1
    cb = HOOK_INSN_OUT_CFUNC(on_out)
    hh = uc_hook_h()
    err = uclib.uc_hook_add(h, ctypes.byref(hh), UC_HOOK_INSN, ctypes.cast(cb, ctypes.c_void_p), None,
                            ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(X.UC_X86_INS_OUT))
    if err:
        raise RuntimeError(f"uc_hook_add(UC_HOOK_INSN, OUT) failed: error {err}")
    hlt = 0x1000 + len(code) - 1
    rip = ctypes.c_uint64()
    pc, starts = 0x1000, 0
    t0 = time.perf_counter()
    while pc != hlt:
        starts += 1
        err = uclib.uc_emu_start(h, pc, hlt, 0, 0)
        if err:
            raise RuntimeError(f"uc_emu_start failed: error {err}")
        uclib.uc_reg_read(h, X.UC_X86_REG_RIP, ctypes.byref(rip))
        pc = rip.value
    dt = time.perf_counter() - t0
    want = reps * 64 * SECTOR_WORDS
    if seen[0] != want:
        raise RuntimeError(f"the {kind} limit guest made {seen[0]} OUTs, not {want}")
    out = _rate(seen[0], dt)
    out["emu_starts"] = starts
    return out


def kvm_limit(reps: int = 8) -> dict:
    """The rep-outsw limit guest on real /dev/kvm with the barest userspace loop: ioctl(KVM_RUN) through
    ctypes, read exit_reason, go again on KVM_EXIT_IO, stop at KVM_EXIT_HLT (no in-kernel irqchip, so HLT
    exits). No scheduler, no watchdog, no model: the most the real engine can do from Python."""
    from ..guest import boot_state
    from ..kvm import libc
    from ..kvm.device import open_real_kvm
    from ..linux.include.uapi.linux import kvm as K
    from ..qemu.kvm_all import ram_address

    code = limit_code("rep_outsw", reps)
    ram_size = 2 << 20
    kvm = open_real_kvm(None)
    ram = mmap.mmap(-1, ram_size)
    try:
        vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
        vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=ram_size, userspace_addr=ram_address(ram)))
        vcpu = vm.ioctl(K.KVM_CREATE_VCPU, 0)
        ram[0x1000:0x1000 + len(code)] = code
        boot = boot_state(ram, 64, 0x1000)
        vcpu.ioctl(K.KVM_SET_SREGS, boot.sregs)
        vcpu.ioctl(K.KVM_SET_REGS, boot.regs)
        run = vcpu.kvm_run
        fd, ioctl, KVM_RUN, IO = vcpu.fd, libc._ioctl, K.KVM_RUN, K.KVM_EXIT_IO
        n = 0
        t0 = time.perf_counter()
        while True:
            if ioctl(fd, KVM_RUN, None) < 0:
                raise OSError(ctypes.get_errno(), "KVM_RUN failed")
            if run.exit_reason != IO:
                break
            n += 1
        dt = time.perf_counter() - t0
        reason = K.EXIT_NAMES.get(run.exit_reason, str(run.exit_reason))
        run = None
        if reason != "HLT" or n != reps * 64 * SECTOR_WORDS:
            raise RuntimeError(f"the bare KVM_RUN loop ended with {reason} after {n} IO exits")
        return _rate(n, dt)
    finally:
        kvm.close()
        try:
            ram.close()
        except BufferError:
            pass
