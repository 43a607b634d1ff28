"""The keystone assembler wrapper: modes, caches, and error lines."""
from __future__ import annotations

import pytest

from vmio_edu.errors import AssemblyError
from vmio_edu.guest import assembler
from vmio_edu.guest.assembler import assemble, disassemble


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets an empty disk cache and an empty memory cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assembler.clear_memory_cache()
    yield
    assembler.clear_memory_cache()


def rows(code, mode, base):
    return [(m, ops) for _a, _h, m, ops in disassemble(code, mode, base)]


def test_sixteen_bit():
    code = assemble("mov ax, 0x1234\nmov dx, 0x1f7\nout dx, al\nhlt", 16, 0x1000)
    assert code == bytes.fromhex("b83412" "baf701" "ee" "f4")


def test_thirty_two_bit():
    code = assemble("mov eax, 0x1234\nrep outsw\nhlt", 32, 0x1000)
    assert code == bytes.fromhex("b834120000" "f3666f" "f4")


def test_sixty_four_bit_and_labels_use_base():
    src = "start:\n    mov rax, target\n    jmp start\ntarget: hlt"
    at_1000 = assemble(src, 64, 0x1000)
    at_2000 = assemble(src, 64, 0x2000)
    assert rows(at_1000, 64, 0x1000) == [("mov", "rax, 0x1009"), ("jmp", "0x1000"), ("hlt", "")]
    assert rows(at_2000, 64, 0x2000)[0] == ("mov", "rax, 0x2009")


def test_same_text_differs_between_modes():
    # `mov eax, 1` needs an operand-size prefix in 16-bit mode only.
    assert assemble("mov eax, 1", 16) == bytes.fromhex("66b801000000")
    assert assemble("mov eax, 1", 32) == assemble("mov eax, 1", 64) == bytes.fromhex("b801000000")


def test_empty_source_is_no_code():
    assert assemble("", 64) == b""
    assert assemble("# only a comment\n", 64) == b""


def test_memory_cache_hit_returns_identical_bytes(monkeypatch):
    first = assemble("nop\nmov rax, 5\nhlt", 64)

    def no_keystone(*a, **k):
        raise AssertionError("keystone called on a cache hit")

    monkeypatch.setattr(assembler, "_try", no_keystone)
    again = assemble("nop\nmov rax, 5\nhlt", 64)
    assert again == first and isinstance(again, bytes)


def test_disk_cache_survives_a_new_process(monkeypatch):
    first = assemble("nop\nhlt", 64)
    assert len(list(assembler.cache_dir().glob("*.bin"))) == 1
    assembler.clear_memory_cache()          # as if a new process started
    monkeypatch.setattr(assembler, "_try", lambda *a: (_ for _ in ()).throw(AssertionError("not cached")))
    assert assemble("nop\nhlt", 64) == first


def test_cache_key_includes_mode_and_base():
    assert assemble("jmp there\nthere: hlt", 64, 0x1000) == assemble("jmp there\nthere: hlt", 64, 0x2000)
    assert assemble("mov rax, there\nthere: hlt", 64, 0x1000) != assemble("mov rax, there\nthere: hlt", 64, 0x2000)
    assert assemble("mov eax, 1", 16) != assemble("mov eax, 1", 32)
    assert len(list(assembler.cache_dir().glob("*.bin"))) == 6


def _only_entry():
    (entry,) = assembler.cache_dir().glob("*.bin")
    return entry


@pytest.mark.parametrize("damage", ["flip_code", "truncate", "empty", "garbage", "flip_magic"])
def test_corrupt_disk_entry_is_ignored_and_rewritten(damage):
    src = "mov rax, 0x1122334455667788\nhlt"
    good = assemble(src, 64)
    entry = _only_entry()
    blob = bytearray(entry.read_bytes())
    if damage == "flip_code":
        blob[-3] ^= 0xFF
    elif damage == "truncate":
        blob = blob[:-4]
    elif damage == "empty":
        blob = bytearray()
    elif damage == "garbage":
        blob = bytearray(b"\x90" * len(blob))
    elif damage == "flip_magic":
        blob[0] ^= 0x01
    entry.write_bytes(bytes(blob))
    assembler.clear_memory_cache()
    assert assemble(src, 64) == good
    assert entry.read_bytes() != bytes(blob)                 # rewritten with a good entry
    assembler.clear_memory_cache()
    assert assembler._disk_read(bytes.fromhex(entry.stem)) == good


def test_entry_for_another_key_is_not_trusted():
    a = assemble("nop", 64)
    entry_a = _only_entry()
    b_key = assembler._cache_key("int3", 64, 0x1000)
    # A well-formed entry copied under the wrong name: its embedded key does not match.
    (assembler.cache_dir() / f"{b_key.hex()}.bin").write_bytes(entry_a.read_bytes())
    assembler.clear_memory_cache()
    assert a == b"\x90"
    assert assemble("int3", 64) == b"\xcc"


def test_valid_disk_entry_is_used():
    # Proves the disk cache is really read: a well-formed entry wins over keystone.
    import hashlib
    key = assembler._cache_key("nop", 64, 0x1000)
    assembler.cache_dir().mkdir(parents=True)
    payload = b"\xf4"
    (assembler.cache_dir() / f"{key.hex()}.bin").write_bytes(
        assembler._CACHE_FORMAT + key + hashlib.sha256(payload).digest() + payload)
    assert assemble("nop", 64) == b"\xf4"


def test_unwritable_cache_dir_only_costs_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert assemble("nop", 64) == b"\x90"


def test_syntax_error_names_line_number_and_text():
    src = "\n".join([
        "start:",                      # 1
        "    mov rbx, 0x9000",         # 2
        "    jmp later",               # 3  forward reference to a label after the error
        "    call helper",             # 4
        "    # a comment",             # 5
        "",                            # 6
        "    movv eax, 1",             # 7  the typo
        "later:",                      # 8
        "    hlt",                     # 9
        "helper: ret",                 # 10
    ])
    with pytest.raises(AssemblyError) as exc:
        assemble(src, 64)
    msg = str(exc.value)
    assert "line 7" in msg and "movv eax, 1" in msg
    assert "KS_ERR_ASM_MNEMONICFAIL" in msg


def test_undefined_symbol_names_its_line():
    src = "nop\nnop\nmov eax, nowhere_defined\nnop\nlabel_after: nop\njmp label_after"
    with pytest.raises(AssemblyError, match=r"line 3: .*SYMBOL_MISSING.*mov eax, nowhere_defined"):
        assemble(src, 64)


def test_bad_operand_in_sixteen_bit_mode():
    src = "mov ax, 1\nmov dx, 0x1f0\nmov ax, bx, cx\nhlt"
    with pytest.raises(AssemblyError, match=r"line 3: .*mov ax, bx, cx"):
        assemble(src, 16)


def test_label_defined_twice_names_the_second_definition():
    src = "again: nop\nnop\nagain: hlt"
    with pytest.raises(AssemblyError, match=r"line 3: .*REDEFINED.*again: hlt"):
        assemble(src, 32)


def test_errors_are_not_cached():
    with pytest.raises(AssemblyError):
        assemble("movv eax, 1", 64)
    assert not assembler.cache_dir().exists() or not list(assembler.cache_dir().glob("*.bin"))


@pytest.mark.parametrize("args, match", [
    (("nop", 8, 0), "mode must be 16, 32 or 64"),
    (("nop", 16, 0x10000), "base"),
    (("nop", 64, -1), "base"),
    ((b"nop", 64, 0), "must be a str"),
    (("nop # caf\u00e9", 64, 0), "line 1: non-ASCII"),
])
def test_bad_arguments(args, match):
    with pytest.raises(AssemblyError, match=match):
        assemble(*args)


def test_disassemble_rows_cover_every_byte():
    code = assemble("nop\nmov eax, 0x10\nrep insw\nhlt", 64, 0x1000) + b"\x0f\x0b\xff"
    listing = disassemble(code, 64, 0x1000)
    assert listing[0] == (0x1000, "90", "nop", "")
    assert listing[1] == (0x1001, "b810000000", "mov", "eax, 0x10")
    assert listing[2][2] in ("rep insw", "insw")
    assert [r[2] for r in listing[-3:]] == ["hlt", "ud2", "(bad)"]
    assert bytes.fromhex("".join(r[1] for r in listing)) == code
    addrs = [r[0] for r in listing]
    assert addrs == sorted(addrs) and addrs[-1] == 0x1000 + len(code) - 1


def test_keystone_silence_is_an_error_naming_the_line():
    # keystone returns no bytes and no error for `byte [addr]` (no `ptr`): a guest must not become b"".
    from vmio_edu.guest.assembler import AssemblyError, assemble
    with pytest.raises(AssemblyError, match=r"line 3: keystone produced no code.*cmp byte \[0x5000\], 0"):
        assemble("nop\nnop\ncmp byte [0x5000], 0\nnop", 64, cache=False)
    assert assemble("nop\ncmp byte ptr [0x5000], 0", 64, cache=False).hex() == "90803df83f000000"
    assert assemble("start:\n.equ LIMIT, 3", 64, cache=False) == b""  # only symbols: no code is right
