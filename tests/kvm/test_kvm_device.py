"""The engine's files: opening errors, ioctl errors, mmap, and releasing every fd and mapping."""
from __future__ import annotations

import errno
import gc
import os

import pytest

from kvm_harness import Guest, open_kvm_or_skip
from vmio_edu.errors import EngineUnavailable
from vmio_edu.kvm import device
from vmio_edu.linux.include.uapi.linux import kvm as K


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _kvm_maps() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if "kvm" in line]


def test_missing_device_is_named(monkeypatch):
    monkeypatch.setattr(device, "DEV_KVM", "/nonexistent/kvm")
    with pytest.raises(EngineUnavailable, match="does not exist"):
        device.open_real_kvm(None)


def test_permission_denied_is_named(monkeypatch):
    def deny(path, flags, *a):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(device.os, "open", deny)
    with pytest.raises(EngineUnavailable, match=r"permission denied opening /dev/kvm \(add yourself to the kvm group\)"):
        device.open_real_kvm(None)


def test_not_a_kvm_device_is_named(monkeypatch):
    monkeypatch.setattr(device, "DEV_KVM", "/dev/null")
    before = _fds()
    with pytest.raises(EngineUnavailable, match="KVM_GET_API_VERSION"):
        device.open_real_kvm(None)
    assert _fds() == before


@pytest.mark.kvm
def test_api_version_mismatch_is_named(monkeypatch):
    open_kvm_or_skip().close()
    monkeypatch.setattr(device, "KVM_API_VERSION", 13)
    with pytest.raises(EngineUnavailable, match="API version 12; vmio-edu needs 13"):
        device.open_real_kvm(None)


@pytest.mark.kvm
def test_failing_ioctl_raises_oserror_with_errno():
    kvm = open_kvm_or_skip()
    try:
        assert kvm.ioctl(K.KVM_GET_API_VERSION) == 12
        with pytest.raises(OSError) as e:
            kvm.ioctl(K.KVM_RUN, 0)  # not a /dev/kvm ioctl
        assert e.value.errno in (errno.EINVAL, errno.ENOTTY)
        vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
        vm.ioctl(K.KVM_CREATE_VCPU, 0)
        with pytest.raises(OSError) as e:
            vm.ioctl(K.KVM_CREATE_VCPU, 0)  # the same vCPU id twice
        assert e.value.errno == errno.EEXIST
        with pytest.raises(OSError) as e:
            vm.mmap(4096)
        assert e.value.errno == errno.ENODEV
    finally:
        kvm.close()
    with pytest.raises(OSError) as e:
        kvm.ioctl(K.KVM_GET_API_VERSION)
    assert e.value.errno == errno.EBADF


@pytest.mark.kvm
def test_mmap_length_is_checked_and_views_share_one_mapping():
    g = Guest(16)
    try:
        with pytest.raises(OSError) as e:
            g.vcpu.mmap(g.mmap_size + 1)
        assert e.value.errno == errno.EINVAL
        small = g.vcpu.mmap(64)
        assert len(small) == 64
        g.load("mov dx, 0x1f0; out dx, al")
        g.step()
        assert small[8] == K.KVM_EXIT_IO == g.vcpu.kvm_run.exit_reason
        small.release()
    finally:
        g.close()


@pytest.mark.kvm
def test_close_releases_every_fd_and_mapping():
    gc.collect()
    fds, maps = _fds(), _kvm_maps()
    g = Guest(16)
    g.load("cli; hlt")
    g.vcpu.ioctl(K.KVM_RUN, 0)  # also starts the watchdog
    assert len(_fds()) == len(fds) + 3  # /dev/kvm, the VM, the vCPU
    assert len(_kvm_maps()) > len(maps)
    g.close()
    g.close()  # twice is fine
    assert g.vcpu.closed and g.vm.closed and g.kvm.closed
    assert _fds() == fds and _kvm_maps() == maps
    with pytest.raises(OSError):
        g.vcpu.ioctl(K.KVM_RUN, 0)


@pytest.mark.kvm
def test_a_view_kept_after_close_reads_zeros_instead_of_crashing():
    g = Guest(16)
    g.load("mov dx, 0x1f0; out dx, al")
    g.step()
    kept = g.vcpu.mmap(4096)
    assert kept[8] == K.KVM_EXIT_IO
    g.close()
    assert kept[8] == 0 and not any(kept)
    kept.release()


@pytest.mark.kvm
def test_garbage_collection_closes_everything():
    gc.collect()
    fds, maps = _fds(), _kvm_maps()
    kvm = open_kvm_or_skip()
    vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
    vcpu = vm.ioctl(K.KVM_CREATE_VCPU, 0)
    view = vcpu.mmap(4096)
    assert len(_fds()) == len(fds) + 3
    del kvm, vm, vcpu, view
    gc.collect()
    assert _fds() == fds and _kvm_maps() == maps


@pytest.mark.kvm
def test_closing_kvm_closes_vms_and_vcpus_made_from_it():
    fds = _fds()
    kvm = open_kvm_or_skip()
    vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
    vcpus = [vm.ioctl(K.KVM_CREATE_VCPU, i) for i in range(2)]
    kvm.close()
    assert vm.closed and all(v.closed for v in vcpus)
    assert _fds() == fds
