"""DNS answer rate of our DnsService against dnsmasq, same names, same client, same run.

Both servers run on 127.0.0.1 high ports (loopback only) as separate processes;
one client process keeps a window of queries in flight for a fixed time against
each and counts answers. Prints JSON as the last line:
{"si_qps", "dnsmasq_qps", "ratio_vs_dnsmasq", ...}
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOMAIN = "bench.test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hosts(n: int) -> list[tuple[str, str]]:
    return [(f"node{i}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}") for i in range(1, n + 1)]


def serve_ours(state: Path, port: int) -> None:
    from appliance.config import Config, DnsConfig
    from appliance.service import Context
    from appliance.store import Store
    from services.dns.server import DnsService
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), domain=DOMAIN, state_dir=state,
                 dns=DnsConfig(port=port))
    svc = DnsService(Context(cfg, Store(cfg.db_path)))

    async def main():
        await svc.serve(lambda: print("ready", flush=True))
    asyncio.run(main())


def query(ident: int, name: str) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def load(port: int, names: dict[str, str], seconds: float, window: int = 32) -> dict:
    """Queries for names (name -> its address) for `seconds`; qps counts right answers only
    (NOERROR, one answer, the name's address in it): an error reply is not an answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    rnd = random.Random(1)
    sent = answered = good = stalls = 0
    outstanding: dict[int, str] = {}
    wanted = {name: socket.inet_aton(ip) for name, ip in names.items()}
    choices = list(names)
    end = time.time() + seconds
    ident = 0
    while time.time() < end:
        while len(outstanding) < window:
            ident = (ident + 1) & 0xFFFF
            name = rnd.choice(choices)
            s.send(query(ident, name))
            outstanding[ident] = name
            sent += 1
        ready, _, _ = select.select([s], [], [], 0.2)
        if not ready:
            stalls += 1
            outstanding.clear()     # lost ones: start a fresh window
            continue
        while True:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                break
            rid = struct.unpack_from("!H", data)[0]
            name = outstanding.pop(rid, None)
            if name is not None:
                answered += 1
                good += ((data[3] & 0x0F) == 0 and struct.unpack_from("!H", data, 6)[0] == 1
                         and wanted[name] in data[12:])
    s.close()
    return {"sent": sent, "replies": answered, "right_answers": good, "stalls": stalls,
            "qps": round(good / seconds)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--serve-ours", nargs=2, metavar=("STATE", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_ours:
        serve_ours(Path(args.serve_ours[0]), int(args.serve_ours[1]))
        return 0
    dnsmasq = shutil.which("dnsmasq")
    if not dnsmasq:
        print("dnsmasq is missing: apt-get install dnsmasq-base", file=sys.stderr)
        return 2
    from appliance.store import Store
    from appliance.store.records import Host
    table = hosts(args.hosts)
    names = {f"{h}.{DOMAIN}": ip for h, ip in table}
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Store(tmp / "appliance.db")
        for h, ip in table:
            store.upsert_host(Host(h, ip=ip))
        store.close()
        (tmp / "hosts").write_text("".join(f"{ip} {h}.{DOMAIN}\n" for h, ip in table))
        (tmp / "dnsmasq.conf").write_text("")
        ours_port, dm_port = free_port(), free_port()
        try:
            ours = subprocess.Popen([sys.executable, __file__, "--serve-ours", str(tmp), str(ours_port)],
                                    stdout=subprocess.PIPE, cwd=ROOT)
            procs.append(ours)
            assert ours.stdout.readline().strip() == b"ready"
            dm = subprocess.Popen([dnsmasq, "--no-daemon", f"--conf-file={tmp}/dnsmasq.conf",
                                   "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={dm_port}",
                                   "--no-resolv", "--no-hosts", f"--addn-hosts={tmp}/hosts",
                                   f"--local=/{DOMAIN}/", "--cache-size=10000",
                                   f"--pid-file={tmp}/dnsmasq.pid"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(dm)
            time.sleep(0.5)
            load(ours_port, names, 2.0)          # warm up both (our per-name reply cache fills)
            load(dm_port, names, 2.0)
            si = load(ours_port, names, args.seconds)
            peer = load(dm_port, names, args.seconds)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(5)
    result = {"hosts": args.hosts, "seconds": args.seconds, "si": si, "dnsmasq": peer,
              "si_qps": si["qps"], "dnsmasq_qps": peer["qps"],
              "ratio_vs_dnsmasq": round(si["qps"] / peer["qps"], 3) if peer["qps"] else None}
    print(json.dumps(result))
    if not (si["qps"] and peer["qps"]):
        print("bench/dns.py: a server gave no right answers; no ratio", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
