"""When a test needs the real engine: skip where /dev/kvm cannot be opened, or, with REQUIRE_KVM=1 (a CI
that must exercise the real engine; .ci/run sets it where /dev/kvm is usable), fail instead."""
import os

import pytest


def kvm_usable() -> tuple[bool, str]:
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm on this machine"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, f"cannot open /dev/kvm: {e.strerror}"
    os.close(fd)
    return True, ""


def kvm_required() -> bool:
    return os.environ.get("REQUIRE_KVM", "") not in ("", "0")


def no_kvm(why: str) -> None:
    """Skip a test that needs the real engine (fail it under REQUIRE_KVM=1), saying why."""
    if kvm_required():
        pytest.fail(f"REQUIRE_KVM=1 but the real engine cannot run here: {why}")
    pytest.skip(why)


def require_kvm() -> None:
    ok, why = kvm_usable()
    if not ok:
        no_kvm(why)
