"""The QEMU 10.2 tree is a map of QEMU 10.2's sources: every trace point in vmio_edu/qemu_10_2 knows its 10.2
file:line, stop line and real parameters, its declared arguments are real parameter names, and code
shared with the 1.6.1 model is exactly the functions whose C text did not change, shared visibly."""
import inspect

import vmio_edu.qemu_10_2.accel.kvm.kvm_accel_ops  # noqa: F401 - registers the trace points
import vmio_edu.qemu_10_2.hw.i386.pc_piix  # noqa: F401
import vmio_edu.qemu_10_2.system.main  # noqa: F401
from vmio_edu.qemu.hw.ide import core as core161
from vmio_edu.qemu_10_2.hw.ide import core as core102
from vmio_edu.trace.stacks import UNCHANGED
from vmio_edu.trace.tracepoint import REGISTRY

MODERN = [tp for tp in REGISTRY if tp.fn is not None and tp.fn.__module__.startswith("vmio_edu.qemu_10_2")]


def test_every_modern_trace_point_has_its_10_2_source():
    assert len(MODERN) > 120
    for tp in MODERN:
        assert tp.stack == "10.2", tp.name
        src = tp.source
        assert src is not None, f"{tp.name}: no 10.2 file:line"
        assert src.tag == "v10.2.0" and src.stop and src.stop >= src.line, tp.name
        assert set(tp.argnames) <= set(src.params), f"{tp.name}: {tp.argnames} not in {src.params}"
        # the tree mirrors the file: vmio_edu/qemu_10_2/block/file_posix.py is block/file-posix.c (async_.py is
        # util/async.c: `async` is a Python keyword); static inlines in headers are modelled beside their users
        module = tp.fn.__module__.removeprefix("vmio_edu.qemu_10_2.").replace(".", "/").rstrip("_")
        if not src.file.startswith("include/"):
            assert src.file.removesuffix(".c").replace("-", "_") == module, (tp.name, src.file, module)


def test_the_two_raw_co_pwritev_have_their_own_files():
    tps = [tp for tp in MODERN if tp.name == "raw_co_pwritev"]
    assert sorted((tp.source.file, tp.source.line) for tp in tps) == [("block/file-posix.c", 2675),
                                                                    ("block/raw-format.c", 225)]


def test_shared_code_is_the_unchanged_functions_only():
    shared = {k.rsplit(".", 1)[1]: v for k, v in UNCHANGED.items() if k.startswith("vmio_edu.qemu_10_2.")}
    assert set(shared) == {"ide_cmd_lba48_transform", "cmd_nop", "ide_is_pio_out", "ide_dummy_transfer_stop",
                           "qemu_set_irq", "qemu_irq_raise", "bmdma_irq"}
    # the very same body, running with the 10.2 module's globals (so ide_is_pio_out sees 10.2's
    # ide_sector_write), behind a 10.2 trace point at the 10.2 line
    body = inspect.unwrap(core102.ide_is_pio_out)
    assert body.__code__ is inspect.unwrap(core161.ide_is_pio_out).__code__
    assert body.__globals__ is vars(core102)
    tp = core102.ide_is_pio_out.tracepoint
    assert (tp.stack, tp.source.file, tp.source.line) == ("10.2", "hw/ide/core.c", 2381)
    assert core161.ide_is_pio_out.tracepoint.source.line == 1875


def test_changed_functions_are_modern_code():
    # e.g. 10.2's data port clears DRQ before end_transfer_func and calls blk_aio_pwritev with bytes
    for name in ("ide_data_writew", "ide_sector_write", "ide_sector_write_cb", "ide_transfer_start", "ide_reset"):
        fn102, fn161 = getattr(core102, name), getattr(core161, name)
        assert inspect.unwrap(fn102).__code__ is not inspect.unwrap(fn161).__code__, name
    assert "blk_aio_pwritev" in inspect.getsource(core102.ide_sector_write)
