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


@pytest.fixture
def need_kvm():
    ok, why = kvm_usable()
    if not ok:
        pytest.skip(why)
