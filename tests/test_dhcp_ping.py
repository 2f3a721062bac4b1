"""The ping-check codec, and the policy's part: a new pool address is probed, an answering one set aside."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as IP

from services.dhcp import packet as P
from services.dhcp.ping import ECHO_REPLY, checksum, echo_reply_source, echo_request
from services.dhcp.policy import Arrival
from test_dhcp_policy import MAC, dora, make_cfg, req, store  # noqa: F401  (store: the fixture)
from services.dhcp.leases import LeaseBook
from services.dhcp.policy import Policy
from appliance.store.records import Host


def test_echo_request_has_a_valid_checksum():
    data = echo_request(0x1234, 7)
    assert data[0] == 8 and struct.unpack("!HH", data[4:8]) == (0x1234, 7)
    assert checksum(data) == 0


def _ipv4(src: str, icmp: bytes) -> bytes:
    return bytes([0x45, 0]) + struct.pack("!H", 20 + len(icmp)) + bytes(8) + IP(src).packed + IP("10.77.0.1").packed + icmp


def test_only_our_echo_replies_are_read():
    reply = struct.pack("!BBHHH", ECHO_REPLY, 0, 0, 0x1234, 7)
    assert echo_reply_source(_ipv4("10.77.0.100", reply), 0x1234) == (IP("10.77.0.100"), 7)
    assert echo_reply_source(_ipv4("10.77.0.100", reply), 0x9999) is None          # someone else's ping
    assert echo_reply_source(_ipv4("10.77.0.100", echo_request(0x1234, 7)), 0x1234) is None   # a request
    assert echo_reply_source(b"\x45", 0x1234) is None and echo_reply_source(b"\x60" + bytes(40), 1) is None


def _policy(store, **over):
    cfg = make_cfg(**over)
    return Policy(cfg, store, LeaseBook(cfg.subnets))


def test_new_pool_addresses_are_probed_renewals_and_reservations_not(store):  # noqa: F811
    pol = _policy(store)
    offer, _ = dora(pol)
    assert offer.probe == offer.reply.yiaddr == IP("10.77.0.100")
    again = pol.decide(Arrival(req(P.DISCOVER)))
    assert again.reply.yiaddr == IP("10.77.0.100") and again.probe is None, "its own bound address"
    store.upsert_host(Host("node07", mac="52:54:00:00:00:07", ip="10.77.0.7"))
    fixed = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:07")))
    assert fixed.reply.yiaddr == IP("10.77.0.7") and fixed.probe is None


def test_an_address_that_answers_is_set_aside_and_another_offered(store):  # noqa: F811
    pol = _policy(store)
    arrival = Arrival(req(P.DISCOVER, "52:54:00:00:00:31"))
    first = pol.decide(arrival)
    second = pol.in_use(arrival, first.probe)
    assert second.reason == "offered" and second.probe == second.reply.yiaddr != first.probe
    other = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:32")))
    assert other.reply.yiaddr not in (first.probe, second.probe), "the answering address stays aside"


def test_every_outcome_the_policy_gives_is_a_listed_reason():
    """REASONS is what the fuzz campaign adds up: a reason missing from it would hide dropped datagrams."""
    import ast
    from pathlib import Path
    from services.dhcp import policy
    given = set()
    for node in ast.walk(ast.parse(Path(policy.__file__).read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Decision", "_drop")
                and node.args and isinstance(node.args[0], ast.Constant)):
            given.add(node.args[0].value)
    assert "offered" in given and given <= set(policy.REASONS), given - set(policy.REASONS)
