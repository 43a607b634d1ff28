"""The Linux 6.12 tree is a map of Linux 6.12's sources: every trace point in vmio_edu/linux_6_12 knows its
6.12 file:line, stop line and real parameters, sits in the module that mirrors its file, and the code shared
with the 3.7 model is exactly the PIC functions whose C text did not change, shared visibly."""
import inspect

import vmio_edu.linux_6_12.arch.x86.kvm.i8259  # noqa: F401 - registers the trace points
import vmio_edu.linux_6_12.arch.x86.kvm.irq_comm  # noqa: F401
import vmio_edu.linux_6_12.virt.kvm.irqchip  # noqa: F401
import vmio_edu.linux_6_12.virt.kvm.kvm_main  # noqa: F401
from vmio_edu.linux.arch.x86.kvm import i8259 as pic37
from vmio_edu.linux_6_12.arch.x86.kvm import i8259 as pic612
from vmio_edu.linux_6_12.arch.x86.kvm.vmx import vmx
from vmio_edu.trace.stacks import UNCHANGED
from vmio_edu.trace.tracepoint import REGISTRY

MODERN = [tp for tp in REGISTRY if tp.fn is not None and tp.fn.__module__.startswith("vmio_edu.linux_6_12")]
# Entries of vmx.c's exit table that the model does not implement: made beside the table, whatever file
# defines them (cpuid.c, x86.c, vmx.c).
TABLE_ONLY = {fn.tracepoint.name for fn in vmx._unmodelled_fns.values()}


def test_every_modern_trace_point_has_its_6_12_source_in_the_mirrored_module():
    assert len(MODERN) > 90
    for tp in MODERN:
        assert tp.stack == "10.2" and tp.side == "linux", tp.name
        src = tp.source
        assert src is not None, f"{tp.name}: no 6.12 file:line"
        assert src.tag == "v6.12" and src.stop and src.stop >= src.line, tp.name
        assert set(tp.argnames) <= set(src.params), f"{tp.name}: {tp.argnames} not in {src.params}"
        if tp.name in TABLE_ONLY:
            continue
        module = tp.fn.__module__.removeprefix("vmio_edu.linux_6_12.").replace(".", "/")
        assert src.file.removesuffix(".c") == module, (tp.name, src.file, module)


def test_the_io_path_lines():
    where = {tp.name: (tp.source.file, tp.source.line) for tp in MODERN}
    assert where["handle_io"] == ("arch/x86/kvm/vmx/vmx.c", 5396)
    assert where["kvm_fast_pio"] == ("arch/x86/kvm/x86.c", 9384)
    assert where["kvm_fast_pio_out"] == ("arch/x86/kvm/x86.c", 9317)
    assert where["kvm_fast_pio_in"] == ("arch/x86/kvm/x86.c", 9363)
    assert where["complete_fast_pio_out"] == ("arch/x86/kvm/x86.c", 9307)
    assert where["complete_fast_pio_out_port_0x7e"] == ("arch/x86/kvm/x86.c", 9301)
    assert where["complete_fast_pio_in"] == ("arch/x86/kvm/x86.c", 9342)
    assert where["pio_in_emulated"] == ("arch/x86/kvm/emulate.c", 1425)
    assert where["emulator_pio_in_out"] == ("arch/x86/kvm/x86.c", 8132)
    assert where["vmx_exit_handlers_fastpath"] == ("arch/x86/kvm/vmx/vmx.c", 7258)
    assert where["handle_fastpath_hlt"] == ("arch/x86/kvm/x86.c", 11331)
    assert where["kvm_mmu_page_fault"] == ("arch/x86/kvm/mmu/mmu.c", 6103)


def test_shared_code_is_the_unchanged_pic_functions_only():
    shared = {k.rsplit(".", 1)[1] for k in UNCHANGED if k.startswith("vmio_edu.linux_6_12.")}
    assert shared == {"kvm_pic_set_irq", "pic_update_irq", "pic_ioport_write"}
    body = inspect.unwrap(pic612.kvm_pic_set_irq)
    assert body.__code__ is inspect.unwrap(pic37.kvm_pic_set_irq).__code__
    assert body.__globals__ is vars(pic612)  # its pic_unlock is 6.12's
    assert (pic612.kvm_pic_set_irq.tracepoint.source.line, pic37.kvm_pic_set_irq.tracepoint.source.line) == (188, 191)
    for name in ("pic_unlock", "kvm_pic_read_irq", "pic_poll_read", "pic_ioport_read", "picdev_write"):
        assert inspect.unwrap(getattr(pic612, name)).__code__ is not inspect.unwrap(getattr(pic37, name)).__code__
