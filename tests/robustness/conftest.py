"""Fixtures for tests/robustness: images with a reference copy, the log of real pwrite calls.

The helpers live in robustness_helpers.py (import `assert_image_matches` etc. from there: every test
directory has its own conftest.py, so `import conftest` would be ambiguous).
"""
from robustness_helpers import (Disk, PwriteLog, assert_closed_cleanly, assert_image_matches, disk,
                                expected_image, make_disk, open_fds, pwrite_log)

__all__ = ["Disk", "PwriteLog", "assert_closed_cleanly", "assert_image_matches", "disk", "expected_image",
           "make_disk", "open_fds", "pwrite_log"]
