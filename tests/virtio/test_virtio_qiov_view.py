"""stop.views["qiov"] on the virtio path: each request's QEMUIOVector points into guest RAM at its data
descriptors' buffers (virtqueue_pop maps them in place), and bdrv_aio_multiwrite's merged vector is made of
those same pieces."""
import pytest

from vmio_edu import Machine


def _virtio(q):
    return [r for r in q["requests"] if r.get("kind") == "virtio"]


def _multiwrite(q):
    return [r for r in q["requests"] if r.get("kind") == "multiwrite"]


def _chains(stop):
    (queue,) = stop.views["virtqueue"]["queues"]
    return {c["head"]: c["descriptors"] for c in queue["chains"]}


def _stop(m, function):
    dbg = m.debugger()
    dbg.clear()
    dbg.break_at(function)
    return dbg.cont()


def test_write_requests_at_bdrv_aio_multiwrite_point_at_their_data_descriptors():
    # 4 requests of 2 sectors, one kick: all four reach bdrv_aio_multiwrite unmerged
    with Machine(disk="virtio", op="write", sectors=8, per_request=2, depth=4, ioeventfd=False) as m:
        stop = _stop(m, "bdrv_aio_multiwrite")
        q = stop.views["qiov"]
        reqs = _virtio(q)
        assert [r["head"] for r in reqs] == [0, 3, 6, 9]
        assert [r["sector"] for r in reqs] == [0, 2, 4, 6]
        assert {r["type_name"] for r in reqs} == {"VIRTIO_BLK_T_OUT"}
        assert {r["state"] for r in reqs} == {"handed to bdrv_aio_multiwrite (being merged and submitted)"}
        assert _multiwrite(q) == []  # not merged yet: multiwrite_merge runs inside this call
        chains = _chains(stop)
        for n, r in enumerate(reqs):
            (iov,) = r["iov"]
            data = chains[r["head"]][1]  # header, data, status
            assert (iov["descriptor"], iov["head"], iov["sg_index"]) == (data["index"], r["head"], 1)
            assert iov["buffer"] == "guest RAM" and iov["guest_phys"] == data["addr"]
            assert iov["iov_len"] == data["len"] == r["size"] == 1024
            assert bytes.fromhex(iov["bytes"]) == m.pattern[n * 1024:(n + 1) * 1024]
            elem = m.virtio.vdev.inflight_reqs[r["head"]].elem
            assert elem.out_addr[1] == iov["guest_phys"]  # what virtqueue_pop mapped


def test_a_write_waits_in_the_multireqbuffer_while_the_next_is_dispatched():
    with Machine(disk="virtio", op="write", sectors=4, per_request=2, depth=2, ioeventfd=False) as m:
        dbg = m.debugger()
        dbg.break_at("virtio_blk_handle_write")
        dbg.cont()
        stop = dbg.cont()  # the kick's second request
        states = {r["head"]: r["state"] for r in _virtio(stop.views["qiov"])}
        assert states == {0: "queued in the MultiReqBuffer for virtio_submit_multiwrite",
                          3: "being dispatched by virtio_blk_handle_request"}


def test_the_merged_multiwrite_vector_is_the_guest_buffers_of_all_four_requests():
    with Machine(disk="virtio", op="write", sectors=8, per_request=2, depth=4, ioeventfd=False) as m:
        stop = _stop(m, "bdrv_aio_writev")
        q = stop.views["qiov"]
        (merged,) = _multiwrite(q)
        assert merged["merged"] and (merged["sector"], merged["nb_sectors"]) == (0, 8)
        assert merged["virtio_heads"] == [0, 3, 6, 9] and merged["niov"] == 4 and merged["size"] == 4096
        own = {r["head"]: r["iov"][0] for r in _virtio(q)}
        assert [(v["head"], v["descriptor"], v["guest_phys"], v["offset_in_buffer"]) for v in merged["iov"]] == [
            (h, own[h]["descriptor"], own[h]["guest_phys"], 0) for h in (0, 3, 6, 9)]
        assert b"".join(bytes.fromhex(v["bytes"]) for v in merged["iov"]) == m.pattern[:4096]
        assert all("sector 0 (8 sectors, merged by multiwrite_merge" in r["state"] for r in _virtio(q))
        # the pool worker's pwritev gets the same four pieces of guest RAM
        stop = _stop(m, "aio_worker")
        (pool,) = [r for r in stop.views["qiov"]["requests"] if r["owner"].startswith("thread pool")]
        assert [(v["buffer"], v["iov_offset"]) for v in pool["iov"]] == [
            ("guest RAM", own[h]["guest_phys"]) for h in (0, 3, 6, 9)]
        (merged,) = _multiwrite(stop.views["qiov"])
        assert merged["where"].startswith("coroutine")  # found through the AIOCB the coroutine runs on


def test_one_request_per_kick_is_not_merged():
    with Machine(disk="virtio", op="write", sectors=4, per_request=2, depth=1, ioeventfd=True) as m:
        stop = _stop(m, "bdrv_aio_writev")
        q = stop.views["qiov"]
        (req,) = _virtio(q)
        (mw,) = _multiwrite(q)
        assert not mw["merged"] and "not merged" in mw["owner"] and mw["virtio_heads"] == [req["head"]]
        assert mw["iov"] == req["iov"]  # the request's own vector, handed down as it is


def test_a_read_request_at_virtio_blk_handle_read():
    with Machine(disk="virtio", op="read", sectors=3, ioeventfd=False) as m:
        stop = _stop(m, "virtio_blk_handle_read")
        (req,) = _virtio(stop.views["qiov"])
        assert (req["type_name"], req["sector"], req["size"]) == ("VIRTIO_BLK_T_IN", 0, 3 * 512)
        assert req["state"] == "being dispatched by virtio_blk_handle_request"
        (iov,) = req["iov"]
        data = _chains(stop)[req["head"]][1]
        assert "WRITE" in data["flags_set"]  # the device writes a read's data buffer
        assert (iov["descriptor"], iov["guest_phys"], iov["sg_index"]) == (data["index"], data["addr"], 0)
        assert iov["guest_phys"] == m.program.buffer_addr  # op="read" reads into the first buffer
        stop = _stop(m, "aio_worker")
        (req,) = _virtio(stop.views["qiov"])
        assert req["state"].startswith("read by bdrv_aio_readv (coroutine")
        stop = _stop(m, "virtio_blk_req_complete")
        m.debugger().clear()
        m.debugger().cont()
        assert m.virtio.vdev.inflight_reqs == {}  # completed requests leave the view


def test_indirect_descriptors_are_named_with_their_table():
    with Machine(disk="virtio", op="write", sectors=4, per_request=2, depth=2, indirect=True) as m:
        stop = _stop(m, "bdrv_aio_multiwrite")
        reqs = _virtio(stop.views["qiov"])
        assert len(reqs) == 2
        for r in reqs:
            (iov,) = r["iov"]
            assert iov["indirect_table_of"] == r["head"] and iov["descriptor"] == 1


@pytest.mark.parametrize("disk", ["ide"])
def test_an_ide_machine_has_no_virtio_entries(disk):
    with Machine(disk=disk, op="write", sectors=1) as m:
        stop = _stop(m, "ide_sector_write")
        q = stop.views["qiov"]
        assert _virtio(q) == [] and _multiwrite(q) == []


def test_the_panel_card_names_the_guest_address_and_descriptor():
    from vmio_edu.widgets.render import qiov_html
    with Machine(disk="virtio", op="write", sectors=4, per_request=2, depth=2, ioeventfd=False) as m:
        stop = _stop(m, "bdrv_aio_multiwrite")
        html = qiov_html(stop.views["qiov"])
        assert "1024 bytes of guest RAM at 0x10000 (chain 0, descriptor 1)" in html
        assert "handed to bdrv_aio_multiwrite" in html
