"""Fixtures for the QEMU 10.2 stack's tests.

The emulated engine needs a Linux 6.12 kernel model (vmio_edu.linux_6_12, another branch). Until it is in
the tree, the tests run QEMU 10.2 on the Linux 3.7 kernel model instead (a Stack record with 10.2's QEMU
entry points and 1.6.1's `kernel`): everything QEMU does is 10.2's either way, and the real engine runs
the host's own kernel.
"""
import dataclasses
import importlib

import pytest

from vmio_edu.stacks import Stack, get_stack


def emulated_stack() -> Stack:
    """The "10.2" stack if its kernel model can be opened, else 10.2's QEMU on the 3.7 kernel model."""
    modern = get_stack("10.2")
    module, _, fn = modern.kernel.partition(":")
    try:
        getattr(importlib.import_module(module), fn)
        return modern
    except (ImportError, AttributeError):
        return dataclasses.replace(modern, kernel=get_stack("1.6.1").kernel)


@pytest.fixture
def stack(engine):
    """The stack to give Machine on this engine (the real engine's kernel is the host's)."""
    return emulated_stack() if engine == "unicorn" else "10.2"


@pytest.fixture
def emu_stack():
    """The stack for a test on the emulated engine only."""
    return emulated_stack()
