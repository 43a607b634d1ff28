"""The state views at a stop: what they show at known points of a one-sector write."""
import json

from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace import views as V
from vmio_edu.trace.views import VIEW_NAMES, decode_exit_qualification


def test_at_ide_sector_write_the_buffer_holds_the_sector_and_bsy_follows(make):
    m, dbg = make(lba=5, seed=7)
    sent = m.expected_sectors()[5]
    dbg.break_at("ide_sector_write")
    stop = dbg.cont()
    ide = stop.views["ide"]
    assert bytes.fromhex(ide["io_buffer"]["bytes"]) == sent  # all 256 words the guest sent
    assert ide["io_buffer"]["data_ptr"] == 512 and ide["drive"]["buffer"]["remaining"] == 0
    assert ide["status"] & 0x08 and not ide["status"] & 0x80  # still DRQ: the transfer just ended
    assert ide["drive"]["command"]["name"] == "WIN_WRITE" and ide["drive"]["sector_num"] == 5
    # ide_sector_write sets BSY before it hands the sector to the block layer
    dbg.break_at("bdrv_aio_writev")
    inner = dbg.cont()
    ide = inner.views["ide"]
    assert inner.function == "bdrv_aio_writev"
    assert ide["status_bits"]["BSY"] and ide["status"] & 0x80 and not ide["status"] & 0x08
    assert ide["status_text"] == "BSY|DRDY|DSC"


def test_registers_kvm_run_and_vmcs_at_the_last_word(make):
    m, dbg = make(lba=2)
    sent = m.expected_sectors()[2]
    dbg.break_at("ide_sector_write")
    stop = dbg.cont()
    regs = stop.views["registers"]
    assert regs["mode"] == 64 and regs["regs"]["rdx"] & 0xFFFF == 0x1F0
    cur = [r for r in regs["disassembly"]["rows"] if r["current"]]
    assert len(cur) == 1 and cur[0]["mnemonic"] == "rep outsw" and cur[0]["address"] == regs["regs"]["rip"]
    assert len(regs["disassembly"]["rows"]) > 5
    run = stop.views["kvm_run"]
    assert run["exit_reason_name"] == "IO"
    assert run["io"] == {"direction": "out", "size": 2, "port": 0x1F0, "count": 1, "data_offset": 4096}
    assert bytes.fromhex(run["pio"]["bytes"]) == sent[-2:]  # the last word, on the PIO page
    head = bytes.fromhex(run["bytes"])
    fields = {f["name"]: f for f in run["fields"]}
    assert int.from_bytes(head[8:12], "little") == K.KVM_EXIT_IO == fields["exit_reason"]["value"]
    assert fields["io.port"]["offset"] == 34 and fields["io.port"]["value"] == 0x1F0
    vmcs = stop.views["vmcs"]
    assert vmcs["exit_reason"] == 30 and vmcs["opaque"] == (m.engine == "kvm")
    q = {r["field"]: r["value"] for r in vmcs["exit_qualification_decoded"]}
    assert q == {"size of access": 1, "direction": 0, "string instruction": 1, "REP prefixed": 1,
                 "operand encoding": 0, "reserved": 0, "port number": 0x1F0}
    if m.engine == "unicorn":
        assert vmcs["fields"]["GUEST_RIP"] == regs["regs"]["rip"] and vmcs["instruction_length"] == 3


def test_exit_qualification_decoding():
    q = 0x1F7 << 16 | 8 | 0  # in al, dx
    rows = {r["field"]: r for r in decode_exit_qualification(30, q)}
    assert rows["direction"]["meaning"].startswith("IN") and rows["size of access"]["meaning"] == "1 byte (value + 1)"
    assert rows["port number"]["meaning"] == "0x1f7" and rows["operand encoding"]["meaning"] == "port in DX"
    rows = {r["field"]: r["value"] for r in decode_exit_qualification(30, 0x80 << 16 | 64 | 3)}
    assert rows["operand encoding"] == 1 and rows["size of access"] == 3 and rows["port number"] == 0x80
    ept = {r["field"]: r["value"] for r in decode_exit_qualification(48, 0b10000010)}
    assert ept["data write"] == 1 and ept["data read"] == 0 and ept["guest linear address valid"] == 1


def test_disk_diff_before_and_after_the_pwrite(make):
    m, dbg = make(lba=9, seed=3)
    dbg.break_at("sys_pwrite64")
    before = dbg.cont()
    assert before.thread == "worker-1"
    assert before.views["disk"]["sectors_changed"] == []
    done = dbg.finish()
    assert (done.kind, done.function) == ("leave", "sys_pwrite64")
    disk = done.views["disk"]
    assert disk["sectors_changed"] == [9] and disk["sectors_changed_count"] == 1
    s = disk["sectors"][0]
    assert s["lba"] == 9 and bytes.fromhex(s["before"]) == bytes(512)
    assert bytes.fromhex(s["after"]) == m.expected_sectors()[9] and s["changed_bytes"] > 400
    other = done.views.sector(10)
    assert other["changed_bytes"] == 0 and other["before"] == other["after"]


def test_qiov_thread_pool_and_threads_at_aio_worker(make):
    m, dbg = make(lba=1)
    sent = m.expected_sectors()[1]
    dbg.break_at("aio_worker")
    stop = dbg.cont()
    reqs = stop.views["qiov"]["requests"]
    ide = [r for r in reqs if r["owner"].startswith("IDE")]
    pool = [r for r in reqs if r["owner"].startswith("thread pool")]
    assert len(ide) == 1 and bytes.fromhex(ide[0]["iov"][0]["bytes"]) == sent
    assert ide[0]["iov"][0]["buffer"] == "ide0-0 io_buffer"
    assert len(pool) == 1 and pool[0]["state"] == "THREAD_ACTIVE" and pool[0]["worker"] == "worker-1"
    assert bytes.fromhex(pool[0]["iov"][0]["bytes"]) == sent and pool[0]["arg"]["aio_offset"] == 512
    tp = stop.views["thread_pool"]
    assert tp["created"] and tp["cur_threads"] == 1 and tp["queue"] == []
    assert [w["state"] for w in tp["workers"]] == ["active"] and len(tp["in_flight"]) == 1
    th = {t["name"]: t for t in stop.views["threads"]["threads"]}
    assert th["worker-1"]["state"] == "running"
    assert [f["function"] for f in th["worker-1"]["backtrace"]] == ["aio_worker", "worker_thread"]
    assert th["main"]["state"] == "blocked" and th["main"]["why"]
    assert th["vcpu0"]["state"] in ("ready", "blocked")
    assert th["vcpu0"]["backtrace"][-1]["function"] == "qemu_kvm_cpu_thread_fn"
    co = stop.views["coroutines"]
    assert len(co["live"]) == 1 and co["live"][0]["entry"] == "bdrv_co_do_rw"
    assert co["live"][0]["state"] == "yielded" and co["live"][0]["stack"][0] == "qemu_coroutine_yield"


def test_coroutine_running_on_the_vcpu(make):
    m, dbg = make()
    dbg.break_at("paio_submit")
    stop = dbg.cont()
    co = stop.views["coroutines"]["live"]
    assert len(co) == 1 and co[0]["state"] == "running" and co[0]["thread"] == "vcpu0"
    assert co[0]["stack"][0] == "paio_submit" and co[0]["stack"][-1] == "bdrv_co_do_rw"


def test_every_view_is_plain_json_at_several_stops(make):
    m, dbg = make(op="both")
    start = dbg.stop.views.to_json()  # before the guest ran
    json.dumps(start)
    assert start["vmcs"]["exit_reason"] is None and "no VM exit yet" in start["vmcs"]["note"]
    assert start["registers"]["disassembly"]["rows"][0]["current"]  # RIP at the entry point
    assert {t["state"] for t in start["threads"]["threads"]} == {"ready"}
    dbg.break_at(layer="qemu-threadpool")
    names = set()
    for _ in range(6):
        stop = dbg.cont()
        data = stop.views.to_json()
        assert list(data) == list(VIEW_NAMES)
        json.dumps(data)
        names.add(stop.function)
    dbg.clear()
    end = dbg.cont()
    assert end.reason == "halted"
    json.dumps(end.views.to_json())
    assert dbg.stop.views["exits"]["last"][-1]["reason"] == "HLT"


def test_register_view_reads_without_side_effects(make):
    """The emulated engine's register view reads KVM's cache without filling it: the run after it is
    unchanged (checked by the trace), and the values equal what KVM_GET_REGS returns."""
    m, dbg = make()
    dbg.break_at("handle_io" if m.engine == "unicorn" else "kvm_handle_io")
    stop = dbg.cont()
    assert stop.reason == "breakpoint"
    regs = stop.views["registers"]["regs"]
    if m.engine == "unicorn":
        vcpu = m.cpu.kvm_fd.vcpu
        avail = vcpu.arch.regs_avail
        assert not avail >> 16 & 1  # RIP is still only in the VMCS: the view read it from there
        assert V.peek_regs(m) == regs and vcpu.arch.regs_avail == avail
    r = K.kvm_regs()
    m.cpu.kvm_fd.ioctl(K.KVM_GET_REGS, r)  # last: on the emulated engine this fills the cache
    assert {n: getattr(r, n) for n, _ in K.kvm_regs._fields_} == regs
