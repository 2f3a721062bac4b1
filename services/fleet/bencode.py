"""The bencoding of .torrent files (BEP 3): just enough to read a torrent's info hash."""
from __future__ import annotations

import hashlib


class BencodeError(ValueError):
    """Not a bencoded value; the message says where."""


def _end_of(data: bytes, i: int) -> int:
    """The index just past the bencoded value that starts at data[i]."""
    if i >= len(data):
        raise BencodeError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        int(data[i + 1:j])
        return j + 1
    if c in (b"l", b"d"):
        i += 1
        while data[i:i + 1] != b"e":
            i = _end_of(data, i)
        return i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        end = colon + 1 + int(data[i:colon])
        if end > len(data):
            raise BencodeError("string runs past the end")
        return end
    raise BencodeError(f"unexpected byte {c!r} at {i}")


def info_hash(torrent: bytes) -> str:
    """The SHA-1 of the torrent's bencoded info dictionary, in hex (what trackers whitelist)."""
    try:
        if torrent[:1] != b"d":
            raise BencodeError("a torrent is a dictionary")
        i = 1
        while torrent[i:i + 1] != b"e":
            key_end = _end_of(torrent, i)
            key = torrent[torrent.index(b":", i) + 1:key_end]
            value_end = _end_of(torrent, key_end)
            if key == b"info":
                if torrent[key_end:key_end + 1] != b"d":
                    raise BencodeError("info is not a dictionary")
                return hashlib.sha1(torrent[key_end:value_end]).hexdigest()
            i = value_end
    except (ValueError, IndexError) as exc:
        raise BencodeError(f"not a torrent: {exc}") from None
    raise BencodeError("not a torrent: no info dictionary")
