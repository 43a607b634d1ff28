"""Does the image hold what the guest wrote? The check `vmio-edu trace`, `paths` and `diff-paths` print
after a run: the real file against the bytes the guest meant to write and read back."""
from __future__ import annotations

import os
from typing import Any

# include/hw/virtio/virtio-blk.h: the status byte the device writes last
_VIRTIO_BLK_STATUS = {1: "VIRTIO_BLK_S_IOERR", 2: "VIRTIO_BLK_S_UNSUPP"}


def image_check(m: Any) -> dict:
    """Does the image hold exactly what the guest wrote, and did the guest read it back?"""
    expected = m.expected_sectors()
    changed = m.image_changes()
    problems = []
    image_sectors = os.path.getsize(m.image_path) // 512
    result = m.guest_result()
    if getattr(m, "disk", "ide") == "virtio" and result.get("read_only") and m.op in ("write", "both"):
        # the guest obeyed VIRTIO_BLK_F_RO: no write was sent, so there are no written bytes to look for
        expected = {}
        problems.append("the guest refused the write: the device offers VIRTIO_BLK_F_RO (the image is "
                        "read-only), so virtblk_probe made the disk read-only and opening it for writing "
                        "failed with EACCES; no request reached the device")
    failed = bool(result.get("error"))
    for lba, data in expected.items():
        if lba >= image_sectors:  # say why, rather than that the bytes are missing
            problems.append(f"sector {lba} is past the end of the image ({image_sectors} sectors)")
        elif m.image_bytes(lba) != data and failed and lba not in changed:
            # untouched because the device refused the request (virtio-blk fails it whole), not lost
            problems.append(f"sector {lba} was not written: the guest's request failed")
        elif m.image_bytes(lba) != data:
            problems.append(f"sector {lba} does not hold the bytes the guest wrote")
    unexpected = [s for s in changed if s not in expected]
    if unexpected:
        problems.append(f"sectors changed that the guest did not write: {unexpected[:8]}")
    if m.op in ("read", "both") and "read_back" in result:
        want = m.image_bytes(m.lba, m.sectors or 256)
        if result["read_back"] != want:
            problems.append("the guest's read buffer differs from the image")
    if result.get("error"):
        status = result.get("status", 0)
        name = _VIRTIO_BLK_STATUS.get(status) if getattr(m, "disk", "ide") == "virtio" else None
        problems.append(f"the guest saw an error: status={status:#x} error={result.get('error', 0):#x}"
                        + (f" ({name})" if name else ""))
    return {"ok": not problems, "sectors_written": sorted(expected), "sectors_changed": changed,
            "problems": problems}
