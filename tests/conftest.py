import pytest

from kvm_policy import require_kvm


@pytest.fixture
def need_kvm():
    """Skips, with the reason, where /dev/kvm cannot be opened; fails instead under REQUIRE_KVM=1."""
    require_kvm()
