"""A DHCP test client run inside a lab namespace (ip netns exec NS python dhcp_client.py ...).

It uses scapy (an independent implementation) to build requests and parse
replies, and prints one JSON line with what it saw. Modes:
  dora      DISCOVER/OFFER/REQUEST/ACK over raw L2 broadcast
  discover  collect every OFFER for a while
  udp       one request over a plain UDP socket (relay with giaddr, or port 4011)
  load      relay-style load: many MACs, DORA each, one "mac ip" line per ACK
"""
from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import sys
import time

from scapy.config import conf
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.sendrecv import sendp, sniff, srp1

conf.checkIPaddr = False
conf.verb = 0


def summary(bootp) -> dict | None:
    if bootp is None or BOOTP not in bootp:
        return None
    b = bootp[BOOTP]
    opts = {}
    for o in b[DHCP].options if DHCP in b else []:
        if isinstance(o, tuple):
            value = o[1] if len(o) == 2 else list(o[1:])
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            opts[str(o[0])] = value
    return {"op": b.op, "xid": b.xid, "yiaddr": b.yiaddr, "siaddr": b.siaddr, "ciaddr": b.ciaddr,
            "giaddr": b.giaddr, "flags": int(b.flags), "file": b.file.rstrip(b"\0").decode("latin-1"),
            "options": opts}


def extra_options(specs: list[str]) -> list:
    out = []
    for spec in specs or []:
        code, _, value = spec.partition(":")
        out.append((int(code), bytes.fromhex(value)))
    return out


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def dora(args) -> dict:
    mac = mac_bytes(args.mac)
    xid = random.getrandbits(32)
    extra = extra_options(args.opt)
    frame = (Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(chaddr=mac, xid=xid, flags=0x8000)
             / DHCP(options=[("message-type", "discover")] + extra + ["end"]))
    offer = srp1(frame, iface=args.iface, timeout=args.timeout)
    result = {"offer": summary(offer), "ack": None}
    if offer is None or args.discover_only:
        return result
    server_id = dict(o for o in offer[DHCP].options if isinstance(o, tuple) and len(o) == 2).get("server_id")
    frame = (Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(chaddr=mac, xid=xid, flags=0x8000)
             / DHCP(options=[("message-type", "request"), ("server_id", server_id),
                             ("requested_addr", offer[BOOTP].yiaddr)] + extra + ["end"]))
    result["ack"] = summary(srp1(frame, iface=args.iface, timeout=args.timeout))
    return result


def discover(args) -> dict:
    mac = mac_bytes(args.mac)
    xid = random.getrandbits(32)
    frame = (Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(chaddr=mac, xid=xid, flags=0x8000)
             / DHCP(options=[("message-type", "discover")] + extra_options(args.opt) + ["end"]))
    got = sniff(iface=args.iface, timeout=args.timeout, started_callback=lambda: sendp(frame, iface=args.iface),
                lfilter=lambda p: BOOTP in p and p[BOOTP].op == 2 and p[BOOTP].xid == xid)
    return {"offers": [summary(p) for p in got]}


def udp(args) -> dict:
    """One request from a bound UDP socket: as a relay (giaddr) or a PXE client on 4011."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.bind, args.sport))
    mac = mac_bytes(args.mac)
    xid = random.getrandbits(32)
    mtype = args.type
    pkt = BOOTP(chaddr=mac, xid=xid, giaddr=args.giaddr or "0.0.0.0", ciaddr=args.ciaddr or "0.0.0.0") / DHCP(
        options=[("message-type", mtype)] + extra_options(args.opt) + ["end"])
    s.sendto(bytes(pkt), (args.server, args.dport))
    replies = []
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        ready, _, _ = select.select([s], [], [], deadline - time.time())
        if not ready:
            break
        data, source = s.recvfrom(4096)
        reply = BOOTP(data)
        if reply.xid == xid:
            replies.append(dict(summary(reply), source=list(source)))
            break
    return {"replies": replies}


def load(args) -> dict:
    """DORA for many clients through a relay socket; prints 'mac ip' per ACK, flushed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.giaddr, 67))
    s.setblocking(False)
    prefix = random.getrandbits(16)
    pending: dict[int, tuple[bytes, float, int]] = {}   # xid -> (mac, sent, stage)
    acked = sent = 0
    next_client = 0
    deadline = time.time() + args.seconds
    out = open(args.out, "a", buffering=1) if args.out else sys.stdout

    def send(xid: int, mac: bytes, options: list) -> None:
        pkt = BOOTP(chaddr=mac, xid=xid, giaddr=args.giaddr) / DHCP(options=options + ["end"])
        try:
            s.sendto(bytes(pkt), (args.server, 67))
        except OSError:
            pass

    while time.time() < deadline and (args.count == 0 or next_client < args.count or pending):
        while len(pending) < args.concurrency and (args.count == 0 or next_client < args.count):
            next_client += 1
            mac = bytes([2, prefix >> 8, prefix & 255]) + next_client.to_bytes(3, "big")
            xid = random.getrandbits(32)
            pending[xid] = (mac, time.time(), 1)
            send(xid, mac, [("message-type", "discover")])
            sent += 1
        ready, _, _ = select.select([s], [], [], 0.05)
        if ready:
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                reply = BOOTP(data)
                entry = pending.get(reply.xid)
                if entry is None or DHCP not in reply:
                    continue
                mac, _, stage = entry
                mtype = dict(o for o in reply[DHCP].options if isinstance(o, tuple) and len(o) == 2).get("message-type")
                if stage == 1 and mtype == 2:
                    pending[reply.xid] = (mac, time.time(), 2)
                    send(reply.xid, mac, [("message-type", "request"), ("server_id", args.server),
                                          ("requested_addr", reply.yiaddr)])
                elif stage == 2 and mtype == 5:
                    out.write(f"{mac.hex(':')} {reply.yiaddr}\n")
                    acked += 1
                    del pending[reply.xid]
                elif mtype == 6:
                    del pending[reply.xid]
        now = time.time()
        for xid, (mac, when, stage) in list(pending.items()):
            if now - when > 2:
                del pending[xid]                  # lost: give up on this client
    return {"sent": sent, "acked": acked}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["dora", "discover", "udp", "load"])
    p.add_argument("--iface", default="eth0")
    p.add_argument("--mac", default="52:54:00:12:34:56")
    p.add_argument("--opt", action="append", help="CODE:HEX extra option")
    p.add_argument("--timeout", type=float, default=4.0)
    p.add_argument("--discover-only", action="store_true")
    p.add_argument("--server", default="10.77.0.1")
    p.add_argument("--giaddr")
    p.add_argument("--ciaddr")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--sport", type=int, default=67)
    p.add_argument("--dport", type=int, default=67)
    p.add_argument("--type", default="discover")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--out")
    args = p.parse_args()
    result = {"dora": dora, "discover": discover, "udp": udp, "load": load}[args.mode](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
