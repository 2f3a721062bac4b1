"""The newc writer: what we write parses back, and busybox cpio agrees."""
from __future__ import annotations

import io
import os
import stat
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootimages.cpio import CpioError, CpioWriter, read
from support.bootimage_support import require_busybox


def _sample() -> bytes:
    buf = io.BytesIO()
    w = CpioWriter(buf, mtime=1700000000)
    w.directory("usr")
    w.directory("usr/bin")
    w.file("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    w.file("empty", b"")
    w.file("odd", b"x" * 5)           # data needing padding
    w.symlink("bin", "usr/bin")
    w.directory("dev")
    w.char_device("dev/console", 5, 1)
    w.directory("tmp", 0o1777)
    w.close()
    return buf.getvalue()


def test_round_trip_reads_back_every_field():
    entries = {e.name: e for e in read(_sample())}
    assert list(entries) == ["usr", "usr/bin", "usr/bin/tool", "empty", "odd", "bin", "dev", "dev/console", "tmp"]
    tool = entries["usr/bin/tool"]
    assert tool.is_file and stat.S_IMODE(tool.mode) == 0o755 and tool.data == b"#!/bin/sh\necho hi\n"
    assert tool.mtime == 1700000000 and tool.uid == 0 and tool.gid == 0
    assert entries["bin"].is_symlink and entries["bin"].data == b"usr/bin"
    assert entries["usr"].is_dir and entries["usr"].nlink == 2
    assert stat.S_ISCHR(entries["dev/console"].mode) and (entries["dev/console"].rdev_major,
                                                          entries["dev/console"].rdev_minor) == (5, 1)
    assert stat.S_IMODE(entries["tmp"].mode) == 0o1777
    assert entries["odd"].data == b"xxxxx" and entries["empty"].data == b""
    assert len({e.ino for e in entries.values()}) == len(entries)


def test_alignment_every_header_on_four_bytes():
    data = _sample()
    assert len(data) % 4 == 0
    pos = 0
    while (pos := data.find(b"070701", pos)) != -1:
        assert pos % 4 == 0
        pos += 6


def test_busybox_cpio_lists_and_extracts_the_same(tmp_path):
    busybox = require_busybox()
    archive = tmp_path / "a.cpio"
    archive.write_bytes(_sample())
    listing = subprocess.run([busybox, "cpio", "-t"], stdin=open(archive, "rb"), capture_output=True,
                             text=True, check=True).stdout.split()
    assert listing == [e.name for e in read(archive.read_bytes())]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([busybox, "cpio", "-id"], stdin=open(archive, "rb"), cwd=out, check=True, capture_output=True)
    assert (out / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(out / "usr/bin/tool", os.X_OK)
    assert os.readlink(out / "bin") == "usr/bin"
    assert (out / "odd").read_bytes() == b"xxxxx"


@pytest.mark.parametrize("bad", ["", "/", "a/../b", "./x", "a//b"])
def test_bad_paths_are_refused(bad):
    with pytest.raises(CpioError):
        CpioWriter(io.BytesIO()).file(bad, b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_reader_either_parses_or_raises_its_error(blob):
    try:
        list(read(blob))
    except CpioError:
        pass


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z0-9_.-]{1,20}", fullmatch=True).filter(lambda s: s not in (".", "..")),
                       st.binary(max_size=300), max_size=20))
def test_any_files_round_trip(files):
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for name, data in files.items():
        w.file(name, data)
    w.close()
    assert {e.name: e.data for e in read(buf.getvalue())} == files


def test_truncated_archive_is_an_error():
    data = _sample()
    with pytest.raises(CpioError):
        list(read(data[: len(data) // 2]))


@pytest.mark.parametrize("compression", ["gzip", "xz"])
def test_initrd_compression_is_what_the_kernel_reads(tmp_path, compression):
    """gzip, or xz with CRC32 checks (the kernel's xz decoder rejects CRC64/SHA-256)."""
    import gzip
    import lzma

    from bootimages.build import BuildOptions, Builder

    builder = Builder(BuildOptions(output=tmp_path, compression=compression, cache_dir=tmp_path))
    builder.tree.file("usr/bin/hello", b"x" * 100000, 0o755)
    builder.tree.symlink("bin", "usr/bin")
    raw = builder._write_initrd(tmp_path / "initrd.img")
    data = (tmp_path / "initrd.img").read_bytes()
    if compression == "xz":
        assert data[:6] == b"\xfd7zXZ\x00" and data[7] == lzma.CHECK_CRC32
        plain = lzma.decompress(data)
    else:
        assert data[:2] == b"\x1f\x8b"
        plain = gzip.decompress(data)
    assert len(plain) == raw
    assert {e.name for e in read(plain)} == {"usr", "usr/bin", "usr/bin/hello", "bin"}
