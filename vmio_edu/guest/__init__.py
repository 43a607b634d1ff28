"""The guest side: assembly sources, the assembler, loading into RAM, and the default guest."""
from .assembler import assemble, disassemble
from .loader import LAYOUT, BootState, LoadError, boot_state, load_code
from .programs import GuestParams, GuestProgram, GuestResult, default_guest
from .virtio_guest import VirtioGuest, virtio_guest

__all__ = [
    "assemble", "disassemble", "boot_state", "load_code", "BootState", "LAYOUT", "LoadError",
    "default_guest", "GuestProgram", "GuestParams", "GuestResult", "virtio_guest", "VirtioGuest",
]
