"""The reference-copy check itself must be able to fail, and say where."""
import pytest

from robustness_helpers import assert_image_matches, expected_image

SECTOR = 512


def test_match_and_first_differing_sector_named(disk):
    data = bytes(range(256)) * 2
    assert_image_matches(disk, disk.reference, {})
    img = bytearray(disk.path.read_bytes())
    img[5 * SECTOR:6 * SECTOR] = data
    img[9 * SECTOR + 3] ^= 1
    disk.path.write_bytes(img)
    with pytest.raises(AssertionError, match="first at sector 9: expected the reference"):
        assert_image_matches(disk, disk.reference, {5: data})
    with pytest.raises(AssertionError, match="first at sector 5: expected the reference .* got other bytes"):
        assert_image_matches(disk, disk.reference, {})
    with pytest.raises(AssertionError, match="first at sector 4: expected the completed write at sector 4"):
        assert_image_matches(disk, disk.reference, [(4, data * 2)])


def test_size_and_growth_are_checked(disk):
    ref = disk.reference
    disk.path.write_bytes(ref[:10 * SECTOR])
    with pytest.raises(AssertionError, match="sector 10: .* got nothing"):
        assert_image_matches(disk, ref, {})
    grown = expected_image(ref[:2 * SECTOR], {4: bytes(SECTOR)})
    assert len(grown) == 5 * SECTOR and grown[2 * SECTOR:] == bytes(3 * SECTOR)
    with pytest.raises(ValueError, match="whole sectors"):
        assert_image_matches(disk, ref, {1: b"x"})
