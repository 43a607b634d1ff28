"""virtio_chain: the public expected values agree with the instructor's oracle, the reference's memory reads
back through an independent vring parser as QEMU's virtqueue_pop would walk it, and graded runs go through the
sandbox like every other exercise."""
from __future__ import annotations

import struct

import pytest

from conftest import answer_from, graded, graded_params, reference, solution_code, variant
from sandbox_helpers import grade, parts, submit
from vmio_edu.grading import virtio_chain as vc
import vmio_edu_instructor.virtio_chain as material


def test_layout_is_the_legacy_vring():
    # vring_init with VIRTIO_PCI_VRING_ALIGN: desc at base, avail after num*16, used at the next 4 KiB boundary
    lay = vc.layout(0x10000, 128)
    assert (lay["desc"], lay["avail"], lay["used"]) == (0x10000, 0x10800, 0x11000)
    assert vc.layout(0, 256)["used"] == 8192 and vc.layout(0, 256)["end"] == 8192 + 4 + 8 * 256 + 2
    assert vc.layout(0, 8)["used"] == 4096
    # vring_size(num, 4096) of include/uapi/linux/virtio_ring.h, written out
    for num in (8, 16, 128, 256, 1024):
        size = ((16 * num + 2 * (3 + num) + 4095) & ~4095) + 2 * 3 + 8 * num
        assert vc.layout(0, num)["end"] == size


def test_need_event_is_u16():
    from vmio_edu_instructor.virtio_exits import _need_event as need_event
    assert need_event(5, 6, 5) and not need_event(4, 6, 5)
    assert need_event(0xFFFF, 0, 0xFFFF)          # new wrapped to 0
    assert not need_event(0xFFFF, 1, 0)           # the device is one behind across the wrap
    assert need_event(3, 5, 1)                    # several added at once, the event among them


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_public_expected_agrees_with_the_instructor_oracle(seed):
    params, hidden = graded_params("virtio_chain", seed)
    for case in params["cases"] + hidden:
        assert vc.expected(case) == material.oracle(case)


def _after(case: dict, fn) -> tuple[bytearray, dict]:
    mem = vc.memory(case)
    out = fn(mem, dict(case["vq"]), dict(case["req"]))
    return mem, out


@pytest.mark.parametrize("seed", [1, 8, 77])
def test_reference_chain_reads_back_through_the_independent_parser(seed):
    """Walk the reference's ring as the device does: the head published at the old avail idx, the chain
    by NEXT/next, WRITE descriptors become in buffers; the header holds the request."""
    params, hidden = graded_params("virtio_chain", seed)
    fn = reference("virtio_chain")
    for case in params["cases"] + hidden:
        vq, req = case["vq"], case["req"]
        before = material.parse_vring(vc.memory(case), vq["base"], vq["num"])
        mem, out = _after(case, fn)
        ring = material.parse_vring(mem, vq["base"], vq["num"])
        old = before["avail"]["idx"]
        assert ring["avail"]["idx"] == (old + 1) % 65536
        head = ring["avail"]["ring"][old % vq["num"]]
        assert head == vq["free_head"]
        descs = material.read_request(mem, ring, head)
        assert [d["addr"] for d in descs] == [req["hdr"]] + [a for a, _ in req["segments"]] + [req["status"]]
        assert [d["len"] for d in descs] == [16] + [512 * n for _, n in req["segments"]] + [1]
        writable = [bool(d["flags"] & vc.F_WRITE) for d in descs]
        assert writable == [False] + [not req["write"]] * len(req["segments"]) + [True]
        if vq["indirect"] is None:
            chain = material.walk_chain(ring, head)
            assert [d["next"] for d in descs] == [before["desc"][i]["next"] for i in chain]  # never rewritten
            assert out["free_head"] == before["desc"][chain[-1]]["next"]
        else:  # one ring descriptor: the table, 16 bytes an entry, INDIRECT only; the table links 0 -> 1 -> ...
            assert ring["desc"][head] == dict(before["desc"][head], addr=vq["indirect"], len=16 * len(descs),
                                              flags=vc.F_INDIRECT)
            assert [d["next"] for d in descs] == list(range(1, len(descs))) + [0]
            assert out["free_head"] == before["desc"][head]["next"]
            others = [i for i in range(vq["num"]) if i != head]
            assert [ring["desc"][i] for i in others] == [before["desc"][i] for i in others]
        assert struct.unpack_from("<IIQ", mem, req["hdr"]) == (int(req["write"]), req["ioprio"], req["sector"])
        assert ring["used"] == before["used"]


def test_hidden_cases_cover_the_edges():
    _params, hidden = graded_params("virtio_chain", 4)
    olds = {material.parse_vring(vc.memory(c), c["vq"]["base"], c["vq"]["num"])["avail"]["idx"] for c in hidden}
    assert 0xFFFF in olds and 0 in olds
    assert any(c["req"]["sector"] >= 1 << 32 for c in hidden)
    assert {c["want"]["kick"] for c in hidden if c["vq"]["event_idx"]} == {True, False}
    assert {c["want"]["kick"] for c in hidden if not c["vq"]["event_idx"]} == {True, False}
    assert {c["req"]["write"] for c in hidden} == {True, False}
    assert {c["vq"]["indirect"] is None for c in hidden} == {True, False}
    consecutive = [c for c in hidden if c["want"]["chain"] != [(c["vq"]["free_head"] + k) % c["vq"]["num"]
                                                               for k in range(len(c["want"]["chain"]))]]
    assert consecutive, "some free list must not be consecutive"


def test_setting_the_status_byte_is_allowed():
    code = variant("virtio_chain", ("    base, num = vq[\"base\"], vq[\"num\"]\n",
                                    "    base, num = vq[\"base\"], vq[\"num\"]\n    mem[req[\"status\"]] = 0xFF\n"))
    res = graded("virtio_chain", answer_from("virtio_chain", code), 3)
    assert all(r.full for r in res.values()), [r.feedback for r in res.values() if not r.full]


def test_a_resized_memory_is_named():
    code = variant("virtio_chain", ('    return {"free_head"', '    mem[0:4] = b""\n    return {"free_head"'))
    res = graded("virtio_chain", answer_from("virtio_chain", code), 3, parts=["avail"])
    assert res["avail"].points == 0 and "changed the size of guest memory" in res["avail"].feedback


def test_a_write_outside_the_request_is_caught():
    code = variant("virtio_chain", ('    return {"free_head"', '    mem[0x1008] = 1\n    return {"free_head"'))
    res = graded("virtio_chain", answer_from("virtio_chain", code), 3)
    assert res["chain"].points == 0 and "does not own" in res["chain"].feedback
    assert res["header"].full and res["kick"].full


def test_graded_in_the_sandbox(tmp_path, capsys):
    r = grade(submit(tmp_path, "virtio_chain", solution_code("virtio_chain")), capsys=capsys)
    assert r["total"] == r["max_total"] == 6, r["parts"]
    wrong = variant("virtio_chain", ('bufs = [(req["hdr"], 16, 0)]', 'bufs = [(req["hdr"], 16, 2)]'))
    r = parts(grade(submit(tmp_path, "virtio_chain", wrong, student="bo"), capsys=capsys))
    assert r["header"]["points"] == 0 and "device-readable" in r["header"]["feedback"]
    assert all(r[p]["points"] == r[p]["max_points"] for p in ("data", "status", "chain", "avail", "kick"))


def test_running_the_public_expected_from_an_answer_scores_zero(tmp_path, capsys):
    cheat = ("import struct\nfrom vmio_edu.grading import virtio_chain as v\n\n"
             "def add_request(mem, vq, req):\n"
             "    case = {'fill': [[0, bytes(mem)]], 'vq': vq, 'req': req}\n"
             "    w = v.expected(case)\n"
             "    for a, h in w['writes']:\n"
             "        mem[a:a + len(bytes.fromhex(h))] = bytes.fromhex(h)\n"
             "    return {'free_head': w['free_head'], 'kick': w['kick']}\n")
    r = grade(submit(tmp_path, "virtio_chain", cheat), "--part", "kick", capsys=capsys)
    assert r["parts"][0]["points"] == 0 and "grader's own code" in r["parts"][0]["feedback"]


def test_the_demo_cell_shows_the_learners_chain(capsys):
    """The notebook's ungraded cell: the learner's function on case 1, the ring read back as virtqueue_pop
    walks it."""
    ns = {"SEED": 12, "add_request": reference("virtio_chain")}
    exec(vc.DEMO, ns)  # noqa: S102 - the notebook cell, as the learner runs it
    after = capsys.readouterr().out.split("{'free_head'")[1]
    case = vc.make(12)["cases"][0]
    assert f"addr={case['req']['hdr']:#x} len=16 flags=0x1 (NEXT)" in after
    assert f"addr={case['req']['status']:#x} len=1 flags=0x2 (WRITE)" in after and "in (device writes)" in after
    with pytest.raises(ValueError, match="cases 1..4"):
        vc.try_case(12, 5)


def test_describe_names_a_looped_chain():
    mem, vq, req = vc.try_case(3, 1)
    lay = vc.layout(vq["base"], vq["num"])
    idx = struct.unpack_from("<H", mem, lay["avail"] + 2)[0]
    struct.pack_into("<H", mem, lay["avail"] + 4 + 2 * ((idx - 1) % vq["num"]), 0)
    struct.pack_into("<QIHH", mem, lay["desc"], 0x1000, 16, vc.F_NEXT, 0)  # desc[0] -> desc[0]
    assert "loops" in vc.describe(mem, vq)


def test_a_natural_helper_is_not_taken_for_the_graders_code(tmp_path, capsys):
    """The sandbox flags answers whose functions have the bytecode of the exercise module's own; a student's
    one-line vring_need_event must not be one of them."""
    helper = ("def need_event(event, new, old):\n"
              "    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF\n\n\n")
    code = variant("virtio_chain", ("        kick = (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF",
                                    "        kick = need_event(event, new, old)"))
    code = code.replace("def add_request", helper + "def add_request")
    r = grade(submit(tmp_path, "virtio_chain", code), "--part", "kick", capsys=capsys)
    assert r["parts"][0]["points"] == 1, r["parts"]
