"""The fleet's pure parts: a torrent's info hash, the engines' output lines, the [fleet]
table's checks. (The engines themselves run in test_fleet_transports.py.)"""
from __future__ import annotations

import hashlib
import subprocess

import pytest

from services.fleet import bencode, multicast, pack, settings, swarm

from support.needs import require_programs


def test_info_hash_is_the_sha1_of_the_info_dictionary_mktorrent_wrote(tmp_path):
    require_programs("mktorrent")
    (tmp_path / "data").write_bytes(b"x" * 300_000)
    torrent = tmp_path / "t.torrent"
    subprocess.run(["mktorrent", "-p", "-l", "18", "-a", "http://10.77.0.1:6969/announce", "-o", str(torrent),
                    str(tmp_path / "data")], check=True, capture_output=True)
    raw = torrent.read_bytes()
    start = raw.index(b"4:infod") + len(b"4:info")
    assert raw.endswith(b"ee")       # info is the last key: its dictionary ends one byte before the end
    assert bencode.info_hash(raw) == hashlib.sha1(raw[start:-1]).hexdigest()


@pytest.mark.parametrize("junk", [b"", b"i42e", b"d4:infoi1e", b"d3:abc", b"l4:infoe", b"d1:a1:be"])
def test_a_damaged_torrent_is_a_clear_error(junk):
    with pytest.raises(bencode.BencodeError):
        bencode.info_hash(junk)


def test_the_seeders_readout_gives_what_it_uploaded():
    assert swarm.uploaded_of("[#31a6ad SEED(1.2) CN:3 SD:0 UL:11MiB(140MiB)]") == 140 * 2**20
    assert swarm.uploaded_of("[#31a6ad SEED(0.1) CN:1 SD:0 UL:512KiB(1.5MiB)]") == int(1.5 * 2**20)
    assert swarm.uploaded_of("[#31a6ad SEED(0.0) CN:0 SD:0 UL:0B(700B)]") == 700
    assert swarm.uploaded_of("[#31a6ad SEED(0.0) CN:0 SD:0]") is None
    assert swarm.uploaded_of("FILE: /state/packs/img/1/image.tar.zst") is None


def test_udp_sender_lines_become_session_events():
    assert multicast.event_of("New connection from 10.77.0.51  (#0) 00000009") == ("joined", "10.77.0.51")
    assert multicast.event_of("Starting transfer: 00000009") == ("started", "")
    assert multicast.event_of("Transfer complete.") == ("done", "")
    assert multicast.event_of("bytes=    12 345 678 re-xmits=0000000") is None


def test_piece_size_keeps_a_torrent_between_1000_and_2000_pieces_where_it_can():
    for size in (256 * 2**20, 4 * 2**30, 30 * 2**30):
        pieces = size >> pack.piece_exponent(size)
        assert 1000 <= pieces <= 2000, (size, pieces)
    # pieces of 256 KiB at least (a small stream has fewer), 16 MiB at most
    assert pack.piece_exponent(50 * 2**20) == 18 and pack.piece_exponent(2**50) == 24


@pytest.mark.parametrize("table, message", [
    ({"transport": "ftp"}, "transport"),
    ({"seed_seconds": -1}, "seed_seconds"),
    ({"join_timeout": True}, "join_timeout"),
    ({"max_bitrate": "fast"}, "max_bitrate"),
    ({"fec": "8x8"}, "fec"),
    ({"min_wait": 10, "max_wait": 5}, "min_wait"),
    ({"peer_port": 6969}, "peer_port"),
    ({"images": {"web": "carrier-pigeon"}}, "images"),
    ({"colour": "blue"}, "colour: unknown key"),
])
def test_the_fleet_table_refuses_what_it_cannot_do(table, message):
    with pytest.raises(settings.SettingsError) as err:
        settings.parse(table)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_transport_policy_asked_then_group_then_image_then_default():
    s = settings.parse({"transport": "rsync", "images": {"web": "multicast"}, "groups": {"r1": "bittorrent"}})
    assert s.transport_for("web") == "multicast"
    assert s.transport_for("web", "r1") == "bittorrent"
    assert s.transport_for("web", "r1", asked="rsync") == "rsync"
    assert s.transport_for("db", "r2") == "rsync"
    assert s.uses("bittorrent") and s.uses("multicast") and not settings.parse({}).uses("multicast")


SS = """0      0      10.77.0.1:6881 10.77.0.51:40218 users:(("aria2c",pid=4242,fd=12))
\t cubic wscale:7,7 rto:204 mss:1448 cwnd:10 bytes_sent:1300000 bytes_retrans:2896 bytes_acked:1297104 segs_out:900
0      0      10.77.0.1:47112 10.77.0.52:6881 users:(("aria2c",pid=4242,fd=13))
\t cubic wscale:7,7 rto:204 mss:1448 bytes_acked:512 bytes_received:99
0      0      10.77.0.1:873 10.77.0.51:50000 users:(("rsync",pid=777,fd=4))
\t cubic bytes_sent:9999 bytes_acked:9999
0      0      [::ffff:10.77.0.1]:6881 [::ffff:10.77.0.53]:40000 users:(("aria2c",pid=4242,fd=14))
\t cubic wscale:7,7 rto:204
"""


def test_the_seeders_connections_are_counted_from_ss():
    """Both directions of connection (the peer's to us, ours to it), only the seeder's process,
    and a connection that has sent nothing yet (no bytes_acked) is left out."""
    got = swarm.acked_by_connection(SS, {4242})
    assert got == {(4242, "10.77.0.1:6881", "10.77.0.51:40218"): 1297104,
                   (4242, "10.77.0.1:47112", "10.77.0.52:6881"): 512}
    assert [swarm.peer_address(peer) for _, _, peer in got] == ["10.77.0.51", "10.77.0.52"]
    assert swarm.peer_address("[::ffff:10.77.0.53]:40000") == "10.77.0.53"
    assert swarm.acked_by_connection(SS, {1}) == {}
