"""The real-KVM engine: the guest runs on this machine's /dev/kvm, driven through ioctl(2) from ctypes.

`device.open_real_kvm(sched)` returns a file that honours the `vmio_edu.devkvm` contract, so QEMU's model
cannot tell it from the emulated kernel. The kernel side is opaque here: one KVM_RUN is one stage, with its
measured time. `libc` holds the few system calls we need, `kick` the watchdog that notices a halted vCPU.
"""
