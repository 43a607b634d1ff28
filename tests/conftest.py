import pytest

from kvm_policy import require_kvm


@pytest.fixture
def need_kvm():
    """Skips, with the reason, where /dev/kvm cannot be opened; fails instead under REQUIRE_KVM=1."""
    require_kvm()


@pytest.fixture(params=["unicorn", pytest.param("kvm", marks=pytest.mark.kvm)])
def engine(request):
    """Each test that takes `engine` runs on the emulated engine and, where /dev/kvm opens, on real KVM."""
    if request.param == "kvm":
        request.getfixturevalue("need_kvm")  # skips, with the reason, where /dev/kvm cannot be opened
    return request.param
