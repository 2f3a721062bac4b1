"""services/safepath: clean() and open_file() added for TFTP, and resolve() built on clean()."""
import os
import stat

import pytest

from services import safepath


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "tftp"
    r.mkdir()
    (tmp_path / "tftp-private").mkdir()
    (tmp_path / "tftp-private" / "secret").write_text("s")
    (r / "f").write_text("file")
    (r / "d").mkdir()
    (r / "d" / "g").write_text("g")
    os.symlink("/etc/passwd", r / "out")
    os.symlink("../tftp-private", r / "sib")
    os.symlink("d/g", r / "in")
    os.mkfifo(r / "fifo")
    os.mknod(r / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return r


@pytest.mark.parametrize("name,expect", [("f", "f"), ("/f", "f"), ("//d/./g", "d/g"), ("d/g/", "d/g"),
                                         ("pxelinux.cfg/01-aa-bb", "pxelinux.cfg/01-aa-bb")])
def test_clean(name, expect):
    assert safepath.clean(name) == expect


@pytest.mark.parametrize("name", ["", "/", ".", "..", "../x", "a/../../x", "a/..", "..\\x", "a\\b", "f\x00x",
                                  "a" * 1025])
def test_clean_refuses(name):
    with pytest.raises(safepath.UnsafePath):
        safepath.clean(name)


def test_open_file_reads_regular_files_inside(root):
    for name, data in (("f", b"file"), ("d/g", b"g"), ("in", b"g")):
        fd, size = safepath.open_file(root, name)
        try:
            assert os.read(fd, 100) == data and size == len(data)
        finally:
            os.close(fd)


@pytest.mark.parametrize("name", ["out", "sib/secret", "d", "fifo", "null", "../tftp-private/secret",
                                  "/dev/zero", "..\\f"])
def test_open_file_refuses(root, name):
    with pytest.raises((safepath.UnsafePath, safepath.NotFound)):
        safepath.open_file(root, name)


def test_open_file_missing_is_not_found(root):
    with pytest.raises(safepath.NotFound):
        safepath.open_file(root, "nope")
    with pytest.raises(safepath.NotFound):
        safepath.open_file(root, "/etc/passwd")      # root-relative, like tftpd-hpa -s


def test_open_file_refuses_a_symlink_swapped_in_after_resolve(root, monkeypatch):
    """The race resolve() cannot see: the final component becomes a symlink out."""
    real_resolve = safepath.resolve

    def racing_resolve(r, name):
        path = real_resolve(r, name)
        os.unlink(path)
        os.symlink("/etc/passwd", path)
        return path

    monkeypatch.setattr(safepath, "resolve", racing_resolve)
    with pytest.raises(safepath.UnsafePath):
        safepath.open_file(root, "f")
