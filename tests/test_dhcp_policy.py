"""DHCP decisions: (request, state) -> reply or silence, with a real Store as directory."""
from __future__ import annotations

import random
import time
from ipaddress import IPv4Address as IP

import pytest

from appliance.config import parse
from appliance.store import Store
from appliance.store.records import Host
from services.dhcp import packet as P
from services.dhcp.hostnames import sanitise
from services.dhcp.leases import LeaseBook
from services.dhcp.policy import PROXY_PORT, Arrival, Policy

SERVER = IP("10.77.0.1")
MAC = "52:54:00:aa:bb:cc"


def make_cfg(**over):
    data = {"interface": "br0", "address": "10.77.0.1", "domain": "lab.example",
            "subnet": [{"network": "10.77.0.0/24", "pools": ["10.77.0.100-10.77.0.199"],
                        "gateway": "10.77.0.1", "dns_servers": ["10.77.0.1"], "lease_time": 600},
                       {"network": "10.88.0.0/24", "pools": ["10.88.0.50-10.88.0.60"],
                        "gateway": "10.88.0.1"}],
            "dhcp": {}}
    for key, value in over.items():
        if key in ("mode", "enrol", "in_order", "loader", "uefi_loader", "site_option"):
            data["dhcp"][key] = value
        else:
            data[key] = value
    return parse(data)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    yield s
    s.close()


def policy(store, **over):
    cfg = make_cfg(**over)
    return Policy(cfg, store, LeaseBook(cfg.subnets))


def req(mtype, mac=MAC, *, ciaddr="0.0.0.0", giaddr="0.0.0.0", options=(), htype=1, op=1, flags=0):
    pkt = P.Packet(op=op, htype=htype, xid=random.getrandbits(32), chaddr=bytes.fromhex(mac.replace(":", "")),
                   ciaddr=IP(ciaddr), giaddr=IP(giaddr), flags=flags,
                   options=[(53, bytes([mtype]))] + list(options))
    return P.decode(P.encode(pkt)) if htype == 1 and op == 1 else pkt


def opts(reply):
    return dict(reply.options)


def dora(pol, mac=MAC, extra=(), giaddr="0.0.0.0"):
    offer = pol.decide(Arrival(req(P.DISCOVER, mac, giaddr=giaddr, options=extra)))
    assert offer.reason == "offered", offer.reason
    ack = pol.decide(Arrival(req(P.REQUEST, mac, giaddr=giaddr, options=list(extra) + [
        (54, SERVER.packed), (50, offer.reply.yiaddr.packed)])))
    return offer, ack


def test_discover_request_ack(store):
    pol = policy(store)
    offer, ack = dora(pol)
    assert offer.reply.message_type == P.OFFER and offer.reply.yiaddr == IP("10.77.0.100")
    assert offer.dest == ("255.255.255.255", 68)
    assert offer.binding is None                       # offers are not stored
    o = opts(offer.reply)
    assert o[1] == IP("255.255.255.0").packed and o[3] == SERVER.packed and o[6] == SERVER.packed
    assert o[51] == P.u32(600) and o[58] == P.u32(300) and o[59] == P.u32(525)
    assert o[15] == b"lab.example" and o[28] == IP("10.77.0.255").packed and o[54] == SERVER.packed
    assert o[100] == SERVER.packed and o[224] == SERVER.packed
    assert 12 not in o                                 # unknown client: no name pushed
    assert ack.reason == "acked" and ack.reply.message_type == P.ACK
    assert ack.reply.yiaddr == IP("10.77.0.100")
    assert ack.binding.mac == MAC and ack.binding.state == "bound"
    # The same client asking again gets the same address.
    again, _ = dora(pol)
    assert again.reply.yiaddr == IP("10.77.0.100")


def test_reservation_and_hostname(store):
    store.upsert_host(Host("node07", mac=MAC, ip="10.77.0.7", image="img"))
    store.upsert_host(Host("node08", mac="52:54:00:00:00:08"))
    pol = policy(store)
    offer, ack = dora(pol)
    assert offer.reply.yiaddr == IP("10.77.0.7") and opts(offer.reply)[12] == b"node07"
    assert ack.reason == "acked" and ack.binding.hostname == "node07"
    known, _ = dora(pol, "52:54:00:00:00:08")
    assert opts(known.reply)[12] == b"node08" and IP("10.77.0.100") <= known.reply.yiaddr <= IP("10.77.0.199")


@pytest.mark.parametrize("directory", ["store", "hot-path copy"])
def test_installed_dynamic_dhcp_hosts_take_pool_addresses(store, directory):
    """dynamic_dhcp: "a DHCP server will assign IP addresses dynamically to clients installed with
    this image". While it installs the host has its own address (the autoinstall finds its name by
    it); once installed it gets a pool address, and its own stays kept for it."""
    from services.dhcp.hosts import HostDirectory
    store.add_image_version("dyn", 1, "/x", ip_method="dynamic_dhcp")
    store.add_image_version("fixed", 1, "/y", ip_method="static_dhcp")
    store.upsert_host(Host("node07", mac=MAC, ip="10.77.0.7", image="dyn"))
    store.upsert_host(Host("node08", mac="52:54:00:00:00:08", ip="10.77.0.8", image="fixed", netboot="local"))
    cfg = make_cfg()
    view = store if directory == "store" else HostDirectory(store)
    fresh = lambda: (view.invalidate(), view.refresh()) if directory != "store" else None
    fresh()
    pol = Policy(cfg, view, LeaseBook(cfg.subnets))
    installing, _ = dora(pol)
    assert installing.reply.yiaddr == IP("10.77.0.7"), "installing: its own address"
    store.set_netboot("node07", "local")
    fresh()
    pol = Policy(cfg, view, LeaseBook(cfg.subnets))
    offer, ack = dora(pol)
    assert IP("10.77.0.100") <= offer.reply.yiaddr <= IP("10.77.0.199") and ack.reason == "acked"
    assert opts(offer.reply)[12] == b"node07", "still named"
    static, _ = dora(pol, "52:54:00:00:00:08")
    assert static.reply.yiaddr == IP("10.77.0.8"), "static_dhcp keeps its fixed address installed"
    other, _ = dora(pol, "52:54:00:00:00:99")
    assert other.reply.yiaddr not in (IP("10.77.0.7"), IP("10.77.0.8"))


def test_reserved_address_never_given_to_others(store):
    store.upsert_host(Host("node07", mac="52:54:00:00:00:07", ip="10.77.0.100"))
    pol = policy(store)
    offer, _ = dora(pol)
    assert offer.reply.yiaddr == IP("10.77.0.101")
    nak = pol.decide(Arrival(req(P.REQUEST, options=[(50, IP("10.77.0.100").packed)])))
    assert nak.reason == "naked"


@pytest.mark.parametrize("stored", ["10.77.0.1", "10.77.0.0", "10.77.0.255", "10.88.0.1"])
def test_a_stored_reservation_no_client_may_have_is_never_handed_out(store, stored):
    """The server's own, network and broadcast addresses and the gateway, even if the store holds one."""
    store.upsert_host(Host("node05", mac=MAC, ip=stored, image="img"))
    pol = policy(store)
    offer, ack = dora(pol)
    assert IP("10.77.0.100") <= offer.reply.yiaddr <= IP("10.77.0.199"), offer.reply.yiaddr
    assert ack.reason == "acked" and ack.binding.ip == offer.reply.yiaddr
    nak = pol.decide(Arrival(req(P.REQUEST, options=[(50, IP(stored).packed)])))
    assert nak.reason == "naked"


def test_a_reservation_of_an_address_another_client_holds_waits_for_that_lease(store):
    """si hosts set --force on a leased address: the first client keeps it until it lets go."""
    pol = policy(store)
    first, _ = dora(pol, "52:54:00:00:00:01")
    taken = first.reply.yiaddr
    store.upsert_host(Host("node10", mac="52:54:00:00:00:10", ip=str(taken), image="img"))
    pol = Policy(pol.cfg, store, pol.book)
    assert pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:10"))).reason == "reserved_address_in_use"
    nak = pol.decide(Arrival(req(P.REQUEST, "52:54:00:00:00:10", options=[(50, taken.packed)])))
    assert nak.reason == "naked" and b"still leased to another client" in opts(nak.reply)[56]
    assert pol.book.for_mac("52:54:00:00:00:01").ip == taken, "the first client's lease is untouched"
    release = pol.decide(Arrival(req(P.RELEASE, "52:54:00:00:00:01", ciaddr=str(taken),
                                     options=[(54, SERVER.packed)])))
    assert release.reason == "released"
    offer, ack = dora(pol, "52:54:00:00:00:10")
    assert offer.reply.yiaddr == taken and ack.reason == "acked"


def test_relay_picks_subnet_by_giaddr(store):
    pol = policy(store)
    offer, ack = dora(pol, giaddr="10.88.0.1")
    assert offer.reply.yiaddr == IP("10.88.0.50")
    assert offer.dest == ("10.88.0.1", 67) and ack.dest == ("10.88.0.1", 67)
    assert opts(offer.reply)[3] == IP("10.88.0.1").packed
    assert offer.reply.giaddr == IP("10.88.0.1")
    unknown = pol.decide(Arrival(req(P.DISCOVER, giaddr="192.168.5.1")))
    assert unknown.reason == "dropped_no_subnet" and unknown.reply is None


def test_relayed_nak_sets_broadcast(store):
    pol = policy(store)
    nak = pol.decide(Arrival(req(P.REQUEST, giaddr="10.88.0.1", options=[
        (54, SERVER.packed), (50, IP("10.77.0.100").packed)])))
    assert nak.reason == "naked" and nak.reply.flags & P.FLAG_BROADCAST
    assert nak.dest == ("10.88.0.1", 67)


def test_request_for_other_server_is_silent_and_frees_the_offer(store):
    pol = policy(store)
    offer = pol.decide(Arrival(req(P.DISCOVER)))
    silent = pol.decide(Arrival(req(P.REQUEST, options=[(54, IP("10.77.0.2").packed),
                                                        (50, offer.reply.yiaddr.packed)])))
    assert silent.reason == "ignored_other_server" and silent.reply is None
    other = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:99")))
    assert other.reply.yiaddr == offer.reply.yiaddr


@pytest.mark.parametrize("ip,reason", [("10.77.0.50", "naked"),       # outside the pools
                                        ("10.99.0.5", "naked"),       # another network
                                        ("10.77.0.150", "acked")])    # in the pool, free
def test_selecting_request_checks(store, ip, reason):
    pol = policy(store)
    d = pol.decide(Arrival(req(P.REQUEST, options=[(54, SERVER.packed), (50, IP(ip).packed)])))
    assert d.reason == reason


def test_init_reboot_and_renew(store):
    pol = policy(store)
    _, ack = dora(pol)
    ip = ack.reply.yiaddr
    # INIT-REBOOT: known client, right address -> ACK; wrong one -> NAK; stranger -> silent.
    assert pol.decide(Arrival(req(P.REQUEST, options=[(50, ip.packed)]))).reason == "acked"
    assert pol.decide(Arrival(req(P.REQUEST, options=[(50, IP("10.77.0.120").packed)]))).reason == "naked"
    stranger = pol.decide(Arrival(req(P.REQUEST, "52:54:00:00:00:42", options=[(50, IP("10.77.0.130").packed)])))
    assert stranger.reason == "ignored_unknown_client"
    # RENEWING: unicast to ciaddr.
    renew = pol.decide(Arrival(req(P.REQUEST, ciaddr=str(ip))))
    assert renew.reason == "acked" and renew.dest == (str(ip), 68) and renew.reply.ciaddr == ip
    # Someone else's address: NAK.
    hijack = pol.decide(Arrival(req(P.REQUEST, "52:54:00:00:00:43", options=[(50, ip.packed)])))
    assert hijack.reason == "naked"


def test_release_and_decline_only_by_owner(store):
    pol = policy(store)
    _, ack = dora(pol)
    ip = ack.reply.yiaddr
    foreign = pol.decide(Arrival(req(P.RELEASE, "52:54:00:00:00:55", ciaddr=str(ip),
                                     options=[(54, SERVER.packed)])))
    assert foreign.reason == "ignored_foreign_release"
    foreign = pol.decide(Arrival(req(P.DECLINE, "52:54:00:00:00:55", options=[(50, ip.packed), (54, SERVER.packed)])))
    assert foreign.reason == "ignored_foreign_decline"
    declined = pol.decide(Arrival(req(P.DECLINE, options=[(50, ip.packed), (54, SERVER.packed)])))
    assert declined.reason == "declined" and declined.binding.state == "declined"
    # The declined address is set aside: neither the decliner nor others get it now.
    again, _ = dora(pol)
    other, _ = dora(pol, "52:54:00:00:00:56")
    assert ip not in (again.reply.yiaddr, other.reply.yiaddr)
    # RELEASE by the owner frees its address for others.
    released = pol.decide(Arrival(req(P.RELEASE, "52:54:00:00:00:56", ciaddr=str(other.reply.yiaddr),
                                      options=[(54, SERVER.packed)])))
    assert released.reason == "released" and released.binding.state == "released"
    third, _ = dora(pol, "52:54:00:00:00:57")
    assert third.reply.yiaddr == other.reply.yiaddr


def test_inform_gets_config_without_address(store):
    pol = policy(store)
    d = pol.decide(Arrival(req(P.INFORM, ciaddr="10.77.0.33")))
    assert d.reason == "informed" and d.reply.yiaddr == IP(0) and 51 not in opts(d.reply)
    assert d.dest == ("10.77.0.33", 68) and opts(d.reply)[1] == IP("255.255.255.0").packed


def test_flood_exhausts_pool_cleanly_known_hosts_still_served(store):
    store.upsert_host(Host("vip", mac="52:54:00:00:00:01", ip="10.88.0.5"))
    store.upsert_host(Host("vip2", mac="52:54:00:00:00:02"))
    pol = policy(store)
    reasons = []
    for i in range(40):
        mac = ":".join(f"{random.getrandbits(8):02x}" for _ in range(6))
        reasons.append(pol.decide(Arrival(req(P.DISCOVER, mac, giaddr="10.88.0.1"))).reason)
    assert reasons.count("offered") == 11 and reasons.count("pool_exhausted") == 29
    vip, ack = dora(pol, "52:54:00:00:00:01", giaddr="10.88.0.1")
    assert vip.reply.yiaddr == IP("10.88.0.5") and ack.reason == "acked"
    # Offers expire: after the hold, the pool serves again.
    later = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:03", giaddr="10.88.0.1")), now=time.time() + 120)
    assert later.reason == "offered"


def test_allocation_is_not_a_pool_scan(store):
    cfg = parse({"interface": "br0", "address": "10.0.0.1",
                 "subnet": [{"network": "10.0.0.0/16", "pools": ["10.0.1.0-10.0.255.254"]}]})
    pol = Policy(cfg, store, LeaseBook(cfg.subnets))
    now = time.time()
    reqs = [req(P.DISCOVER, ":".join(f"{(i >> s) & 255:02x}" for s in (40, 32, 24, 16, 8, 0)))
            for i in range(1, 20001)]
    t0 = time.perf_counter()
    got = {pol.decide(Arrival(r), now).reply.yiaddr for r in reqs}
    elapsed = time.perf_counter() - t0
    assert len(got) == 20000
    # Linear in requests: a pool scan per request would be ~20000*10000/2 steps.
    assert elapsed < 10, elapsed


def test_not_for_us(store):
    pol = policy(store)
    assert pol.decide(Arrival(req(P.OFFER, op=2))).reason == "dropped_not_request"
    assert pol.decide(Arrival(req(P.DISCOVER, htype=6))).reason == "dropped_not_ethernet"
    short = req(P.DISCOVER)
    short.chaddr = b""
    assert pol.decide(Arrival(short)).reason == "dropped_not_ethernet"
    assert pol.decide(Arrival(req(P.DISCOVER), port=PROXY_PORT)).reason == "dropped_proxy_port"


PXE_BIOS = [(60, b"PXEClient:Arch:00000:UNDI:002001"), (93, b"\x00\x00")]
PXE_UEFI = [(60, b"PXEClient:Arch:00007:UNDI:003016"), (93, b"\x00\x07")]
IPXE = [(77, b"iPXE"), (175, b"\x13\x01\x01")]
HTTPBOOT = [(60, b"HTTPClient:Arch:00016:UNDI:003016"), (93, b"\x00\x10")]
SCRIPT = "http://10.77.0.1:8080/boot/ipxe/01-52-54-00-aa-bb-cc.ipxe"


@pytest.mark.parametrize("loader,extra,file,vendor", [
    ("ipxe", PXE_BIOS, "undionly.kpxe", None),
    ("ipxe", PXE_UEFI, "snponly.efi", None),
    ("ipxe", PXE_BIOS + IPXE, SCRIPT, None),
    ("ipxe", PXE_UEFI + [(77, b"iPXE")], SCRIPT, None),
    ("ipxe", PXE_BIOS[:1] + [(175, b"\x13\x01\x01")], SCRIPT, None),
    ("ipxe", HTTPBOOT, "http://10.77.0.1:8080/boot/ipxe.efi", b"HTTPClient"),
    ("ipxe", PXE_BIOS[:1], "undionly.kpxe", None),            # arch only in vendor class
    ("ipxe", [(60, b"PXEClient:Arch:00009:UNDI:003016")], "snponly.efi", None),
    ("ipxe", [(93, b"\x12\x34")], None, None),                   # unknown arch: address only
    ("ipxe", [], None, None),                                    # not network booting
    ("pxelinux", PXE_BIOS, "pxelinux.0", None),
    ("pxelinux", PXE_BIOS + IPXE, "pxelinux.0", None),
    ("pxelinux", PXE_UEFI, "efi64/syslinux.efi", None),
])
def test_boot_policy(store, loader, extra, file, vendor):
    """Each loader family on every firmware (UEFI's choice set to the same family)."""
    pol = policy(store, loader=loader, uefi_loader="ipxe" if loader == "ipxe" else "syslinux")
    offer = pol.decide(Arrival(req(P.DISCOVER, options=extra)))
    assert offer.reason == "offered"
    assert (offer.reply.file.decode() or None) == file
    assert offer.reply.siaddr == SERVER
    if vendor is None:
        assert 60 not in opts(offer.reply)
    else:
        assert opts(offer.reply)[60] == vendor


ARM64_UEFI = [(60, b"PXEClient:Arch:00011:UNDI:003016"), (93, b"\x00\x0b")]


@pytest.mark.parametrize("extra,file", [
    (PXE_UEFI, "shimx64.efi"),                    # shim then loads grubx64.efi from beside it
    (PXE_BIOS, "undionly.kpxe"),                  # BIOS keeps dhcp.loader's choice
    (PXE_UEFI + [(77, b"iPXE")], SCRIPT),         # an iPXE already running gets its script
    (HTTPBOOT, "http://10.77.0.1:8080/boot/ipxe.efi"),
])
def test_uefi_loader_shim_is_the_default(store, extra, file):
    """Debian's signed shim boots with Secure Boot on or off, so every UEFI machine gets it unless told."""
    offer = policy(store).decide(Arrival(req(P.DISCOVER, options=extra)))
    assert offer.reason == "offered" and offer.reply.file.decode() == file


@pytest.mark.parametrize("loader", ["ipxe", "pxelinux"])
def test_arm64_is_offered_no_loader_the_boot_root_lacks(store, loader):
    """Debian ships no arm64 network loader an amd64 appliance lays out: an address, no boot file."""
    for extra in (ARM64_UEFI, [(60, b"HTTPClient:Arch:00019:UNDI:003016"), (93, b"\x00\x13")]):
        offer = policy(store, loader=loader).decide(Arrival(req(P.DISCOVER, options=extra)))
        assert offer.reason == "offered" and offer.reply.file == b""


def test_site_option_configurable(store):
    pol = policy(store, site_option=250, image_server="10.77.0.9")
    o = opts(pol.decide(Arrival(req(P.DISCOVER))).reply)
    assert o[100] == IP("10.77.0.9").packed and o[250] == IP("10.77.0.9").packed and 224 not in o


@pytest.mark.parametrize("raw,expected", [
    (b"node1", "node1"), (b"Node-1.example.com", "node-1"), (b"wpad", None), (b"WPAD", None),
    (b"localhost", None), (b"localhost.lab", None), (b"a\nb", None), (b"a,b", None), (b'a"b', None),
    (b"a\0b", None), (b"\xff\xfe", None), (b"x" * 255, None), (b"", None), (b"-x", None),
    (b"caf\xc3\xa9", None), (b"ok.bad name", None),
])
def test_client_hostnames_sanitised(raw, expected):
    assert sanitise(raw) == expected


@pytest.mark.parametrize("name", [b"wpad", b"localhost", b"a\nb", b'a"b', b"a\0b", b"\xff", b"x" * 255])
def test_bad_client_hostname_never_stored(store, name):
    pol = policy(store)
    _, ack = dora(pol, extra=[(12, name)])
    assert ack.reason == "acked" and ack.binding.hostname is None
    store.save_leases([ack.binding.as_lease()])
    assert store.leases()[0].hostname is None


def test_good_client_hostname_kept(store):
    _, ack = dora(policy(store), extra=[(12, b"Laptop-3")])
    assert ack.binding.hostname == "laptop-3"


def test_enrol_unknown_mac(store):
    pol = policy(store, enrol=True)
    offer = pol.decide(Arrival(req(P.DISCOVER, options=PXE_BIOS)))
    assert offer.enrol == Host("node-525400aabbcc", mac=MAC, netboot="local")
    assert offer.reply.file == b"undionly.kpxe"        # same boot file; the per-host config gates
    store.upsert_host(offer.enrol)
    assert pol.decide(Arrival(req(P.DISCOVER, options=PXE_BIOS))).enrol is None
    assert policy(store).decide(Arrival(req(P.DISCOVER, "52:54:00:00:00:77"))).enrol is None


def test_proxy_mode(store):
    pol = policy(store, mode="proxy")
    assert pol.decide(Arrival(req(P.DISCOVER))).reason == "ignored_not_pxe"
    offer = pol.decide(Arrival(req(P.DISCOVER, options=PXE_BIOS)))
    assert offer.reason == "proxy_offered" and offer.reply.yiaddr == IP(0)
    o = opts(offer.reply)
    assert o[60] == b"PXEClient" and o[43] == bytes((6, 1, 8, 255)) and o[54] == SERVER.packed
    assert 51 not in o and 1 not in o and offer.binding is None
    assert offer.reply.file == b"undionly.kpxe" and o[100] == SERVER.packed
    # REQUEST for the real server's offer: not ours.
    other = pol.decide(Arrival(req(P.REQUEST, options=PXE_BIOS + [(54, IP("10.77.0.2").packed),
                                                                  (50, IP("10.77.0.150").packed)])))
    assert other.reason == "ignored_proxy"
    # The PXE boot-server request on 4011 is answered to its source.
    ack = pol.decide(Arrival(req(P.REQUEST, ciaddr="10.77.0.150", options=PXE_BIOS + IPXE),
                             port=PROXY_PORT, source=("10.77.0.150", 68)))
    assert ack.reason == "proxy_acked" and ack.dest == ("10.77.0.150", 68)
    assert ack.reply.file.decode() == SCRIPT and ack.reply.yiaddr == IP(0)


@pytest.mark.parametrize("directory", ["store", "hot-path copy"])
def test_in_order_machines_become_the_waiting_hosts(store, directory):
    """Manual 13.16: addclients, then boot the machines in the order you want. With dhcp.in_order
    each unknown PXE machine becomes the next host (in name order) that has an address and no MAC:
    its offer carries that host's address and name, and the bound lease records the MAC."""
    from services.dhcp.hosts import HostDirectory
    for name, ip in (("node10", "10.77.0.20"), ("node2", "10.77.0.12"), ("node1", "10.77.0.11")):
        store.upsert_host(Host(name, ip=ip, image="img"))
    store.upsert_host(Host("other", ip="10.77.0.30"))
    view = store if directory == "store" else HostDirectory(store)
    if directory != "store":
        view.refresh()
    pol = policy(store, in_order=True)
    pol.dir = view
    first_offer = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:01:01", options=PXE_BIOS)))
    second_offer = pol.decide(Arrival(req(P.DISCOVER, "52:54:00:00:01:02", options=PXE_BIOS)))
    assert first_offer.reply.yiaddr == IP("10.77.0.11") and opts(first_offer.reply)[12] == b"node1"
    assert second_offer.reply.yiaddr == IP("10.77.0.12"), "the first one's offer holds node1"
    assert first_offer.enrol is None, "an offer records nothing"
    # The second machine asks first: each still becomes the host it was offered.
    ack2 = pol.decide(Arrival(req(P.REQUEST, "52:54:00:00:01:02", options=PXE_BIOS + [
        (54, SERVER.packed), (50, IP("10.77.0.12").packed)])))
    ack1 = pol.decide(Arrival(req(P.REQUEST, "52:54:00:00:01:01", options=PXE_BIOS + [
        (54, SERVER.packed), (50, IP("10.77.0.11").packed)])))
    assert (ack1.reason, ack1.enrol.hostname, ack1.enrol.mac) == ("acked", "node1", "52:54:00:00:01:01")
    assert (ack2.enrol.hostname, ack2.enrol.ip, ack2.enrol.image) == ("node2", "10.77.0.12", "img")
    # A machine that is not PXE-booting (a laptop on the network) takes no host.
    laptop, _ = dora(pol, "52:54:00:00:01:03")
    assert IP("10.77.0.100") <= laptop.reply.yiaddr <= IP("10.77.0.199") and 12 not in opts(laptop.reply)


def test_without_in_order_unknown_machines_take_no_host(store):
    store.upsert_host(Host("node1", ip="10.77.0.11", image="img"))
    offer, ack = dora(policy(store), "52:54:00:00:01:01", extra=PXE_BIOS)
    assert offer.reply.yiaddr != IP("10.77.0.11") and ack.enrol is None
