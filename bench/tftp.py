#!/usr/bin/env python3
"""TFTP throughput: our server against tftpd-hpa, dnsmasq and atftpd, same run, same namespaces.

Two namespaces joined by a veth pair (server 10.77.0.1, client 10.77.0.2);
every server in turn listens on 10.77.0.1:69 inside the server namespace.
- single:     one 64 MiB download, blksize 1468, window 1 (atftp client), median of N
- windowed:   the same with windowsize 16 (atftp client); tftpd-hpa and dnsmasq
              ignore the option, so their figure is window 1 again
- concurrent: 32 curl clients x 16 MiB at once, aggregate MB/s and p99 completion
- http_vs_tftp: kernel (8 MiB) + initrd (60 MiB) over our HTTP (appliance.http)
              vs over our TFTP (curl, blksize 1468, window 1 as a PXE ROM does)

Peers: tftpd-hpa and atftpd conflict as Debian packages, so both are fetched
with `apt-get download` and unpacked with `dpkg-deb -x` into a private folder
(tftpd-hpa needs libwrap0 installed). dnsmasq comes from dnsmasq-base.
Prints a table and the JSON result as the last line. MB = 10^6 bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.lab.netns import Lab  # noqa: E402
from services.tftp.pool import default_workers  # noqa: E402

SERVER_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
BLKSIZE = 1468
MB = 1e6
PEER_DIR = Path(os.environ.get("SI_BENCH_PEERS", "/var/tmp/si-bench-peers"))


def fetch_peers() -> dict[str, Path]:
    """tftpd-hpa's and atftpd's binaries, unpacked privately (the packages conflict)."""
    root = PEER_DIR / "root"
    want = {"tftpd_hpa": root / "usr/sbin/in.tftpd", "atftpd": root / "usr/sbin/atftpd"}
    if not all(p.exists() for p in want.values()):
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "tftpd-hpa", "atftpd"], cwd=PEER_DIR, check=True,
                       capture_output=True)
        for deb in PEER_DIR.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    missing = [str(p) for p in want.values() if not p.exists()]
    if missing:
        sys.exit(f"peer binaries missing after unpacking: {missing}")
    out = subprocess.run(["ldd", str(want["tftpd_hpa"])], capture_output=True, text=True).stdout
    if "not found" in out:
        sys.exit("in.tftpd needs libraries that are not installed (apt-get install libwrap0):\n" + out)
    for tool in ("dnsmasq", "atftp", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    return want


def server_commands(root: Path, work: Path, peers: dict[str, Path]) -> dict[str, list[str]]:
    # Never point dnsmasq's pid file at /dev/null: it unlinks its pid file on exit.
    return {
        "ours": [sys.executable, "-m", "services.tftp.server", str(root), "--address", SERVER_IP, "--port", "69"],
        "tftpd_hpa": [str(peers["tftpd_hpa"]), "-L", "-s", "-u", "root", "--address", f"{SERVER_IP}:69", str(root)],
        "dnsmasq": ["dnsmasq", "-d", "--port=0", "--enable-tftp", f"--tftp-root={root}", "--conf-file=/dev/null",
                    f"--listen-address={SERVER_IP}", "--bind-interfaces", "--user=root", "--tftp-max=200",
                    f"--pid-file={work / 'dnsmasq.pid'}", f"--log-facility={work / 'dnsmasq.log'}"],
        "atftpd": [str(peers["atftpd"]), "--daemon", "--no-fork", "--user", "root.root", "--logfile", str(work / "atftpd.log"),
                   "--bind-address", SERVER_IP, "--port", "69", "--maxthread", "200", str(root)],
    }


class Bench:
    def __init__(self, lab: Lab, srv: str, cli: str, root: Path, out: Path) -> None:
        self.lab, self.srv, self.cli, self.root, self.out = lab, srv, cli, root, out
        self.digests: dict[str, str] = {}

    def client(self, *cmd: str, timeout: float = 300) -> float:
        start = time.perf_counter()
        r = self.lab.run(self.cli, *cmd, check=False, timeout=timeout)
        elapsed = time.perf_counter() - start
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stdout[-300:]} {r.stderr[-300:]}")
        return elapsed

    def atftp(self, name: str, window: int = 1) -> float:
        cmd = ["atftp", "--get", "-r", name, "-l", str(self.out / "atftp.out"), "--option", f"blksize {BLKSIZE}"]
        if window > 1:
            cmd += ["--option", f"windowsize {window}"]
        elapsed = self.client(*cmd, SERVER_IP, "69")
        self.check(name, self.out / "atftp.out")
        return elapsed

    def check(self, name: str, got: Path) -> None:
        """The download is the file, byte for byte (a right size with wrong bytes is a failure)."""
        if name not in self.digests:
            self.digests[name] = _sha256(self.root / name)
        if got.stat().st_size != (self.root / name).stat().st_size or _sha256(got) != self.digests[name]:
            raise RuntimeError(f"{name}: the download differs from the file ({got.stat().st_size} bytes)")

    def fetch(self, url: str, name: str) -> float:
        """Seconds for curl to fetch url (checked against the boot root's `name`)."""
        got = self.out / f"fetched-{name}"
        elapsed = self.client("curl", "-sS", "--fail", "--tftp-blksize", str(BLKSIZE), url, "-o", str(got))
        self.check(name, got)
        got.unlink()
        return elapsed

    def wait_ready(self, proc: subprocess.Popen) -> None:
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            r = self.lab.run(self.cli, "curl", "-s", "--max-time", "1", f"tftp://{SERVER_IP}/ready",
                             "-o", "/dev/null", check=False)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("server did not answer")

    def concurrent(self, clients: int, name: str) -> tuple[float, float]:
        """Aggregate MB/s and the p99 completion time of `clients` parallel curl downloads."""
        done: list[float] = []
        procs = []
        start = time.perf_counter()
        for i in range(clients):
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.cli, "curl", "-sS", "--tftp-blksize", str(BLKSIZE),
                 f"tftp://{SERVER_IP}/{name}", "-o", str(self.out / f"c{i}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

        def waiter(p: subprocess.Popen) -> None:
            p.wait()
            done.append(time.perf_counter() - start)

        threads = [threading.Thread(target=waiter, args=(p,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        failed = [p for p in procs if p.returncode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} concurrent clients failed: {failed[0].stderr.read()[:200]}")
        for i in range(clients):
            self.check(name, self.out / f"c{i}")
            (self.out / f"c{i}").unlink()
        wall = max(done)
        total = clients * (self.root / name).stat().st_size
        done.sort()
        p99 = done[min(len(done) - 1, int(round(0.99 * (len(done) - 1))))]
        return total / wall / MB, p99


def serve_http(root: str, address: str, port: int) -> None:
    """Child mode: our appliance HTTP service serving `root` at /boot/."""
    import asyncio
    from ipaddress import IPv4Address, IPv4Network

    from appliance.config import Config, HttpConfig
    from appliance.http import HttpService
    from appliance.service import Context
    from appliance.store import Store

    state = Path(tempfile.mkdtemp(prefix="si-bench-http-"))
    cfg = Config(interface="lo", address=IPv4Address(address), state_dir=state, boot_dir=Path(root),
                 services=frozenset({"http"}), http=HttpConfig(port=port),
                 # the client is on the install network (else every fetch is a 403, which the
                 # bench once timed as a download)
                 allow_clients=(IPv4Network(f"{address}/24", strict=False),))
    service = HttpService(Context(cfg, Store(state / "db.sqlite")))
    asyncio.run(service.serve(lambda: print("ready", flush=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="single/windowed runs per server (median)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--servers", default="ours,tftpd_hpa,dnsmasq,atftpd")
    parser.add_argument("--serve-http", nargs=3, metavar=("ROOT", "ADDRESS", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_http:
        serve_http(args.serve_http[0], args.serve_http[1], int(args.serve_http[2]))
        return

    peers = fetch_peers()
    work = Path(tempfile.mkdtemp(prefix="si-bench-tftp-"))
    os.chmod(work, 0o755)
    root, out = work / "root", work / "out"
    root.mkdir(mode=0o755)
    out.mkdir()
    for name, size in (("f64", 64 << 20), ("f16", 16 << 20), ("kernel", 8 << 20), ("initrd.img", 60 << 20),
                       ("ready", 10)):
        with open(root / name, "wb") as f:
            f.write(os.urandom(size))
        os.chmod(root / name, 0o644)

    results: dict[str, dict] = {}
    servers = args.servers.split(",")
    commands = server_commands(root, work, peers)
    try:
        with Lab() as lab:
            srv, cli = lab.namespace("tsrv"), lab.namespace("tcli")
            lab.veth(srv, "s0", cli, "c0", f"{SERVER_IP}/24", f"{CLIENT_IP}/24")
            bench = Bench(lab, srv, cli, root, out)
            for name in servers:
                proc = lab.popen(srv, *commands[name], cwd=str(REPO), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                try:
                    bench.wait_ready(proc)
                    size = (root / "f64").stat().st_size
                    single = [size / bench.atftp("f64") / MB for _ in range(args.runs)]
                    windowed = [size / bench.atftp("f64", window=16) / MB for _ in range(args.runs)]
                    agg, p99 = bench.concurrent(args.clients, "f16")
                    results[name] = {"single_MBps": round(statistics.median(single), 1),
                                     "windowed16_MBps": round(statistics.median(windowed), 1),
                                     "concurrent_MBps": round(agg, 1), "concurrent_p99_s": round(p99, 2)}
                    if name == "ours":
                        pair = (root / "kernel").stat().st_size + (root / "initrd.img").stat().st_size
                        tftp_time = sum(bench.fetch(f"tftp://{SERVER_IP}/{f}", f) for f in ("kernel", "initrd.img"))
                        results[name]["kernel_initrd_tftp_MBps"] = round(pair / tftp_time / MB, 1)
                except Exception as exc:
                    results[name] = {"error": str(exc)[:300]}
                finally:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    time.sleep(0.3)
            # Our HTTP serving the same boot root.
            http = lab.popen(srv, sys.executable, __file__, "--serve-http", str(root), SERVER_IP, "8080",
                             cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                if http.stdout.readline().strip() != "ready":
                    raise RuntimeError("HTTP service did not start")
                pair = (root / "kernel").stat().st_size + (root / "initrd.img").stat().st_size
                http_time = sum(bench.fetch(f"http://{SERVER_IP}:8080/boot/{f}", f) for f in ("kernel", "initrd.img"))
                results.setdefault("ours", {})["kernel_initrd_http_MBps"] = round(pair / http_time / MB, 1)
            finally:
                http.terminate()
                http.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours, hpa = results.get("ours", {}), results.get("tftpd_hpa", {})

    def ratio(a, b):
        return round(a / b, 2) if a and b else None

    summary = {
        "file_MiB": 64, "blksize": BLKSIZE, "clients": args.clients, "client_file_MiB": 16,
        "ours_workers": default_workers(), "cpus": os.cpu_count(),
        "single": {"ratio_vs_tftpd_hpa": ratio(ours.get("single_MBps"), hpa.get("single_MBps")),
                   **{f"{k}_MBps": v.get("single_MBps") for k, v in results.items()}},
        "windowed": {"windowsize": 16,
                     "ratio_vs_tftpd_hpa": ratio(ours.get("windowed16_MBps"), hpa.get("single_MBps")),
                     **{f"{k}_MBps": v.get("windowed16_MBps") for k, v in results.items()}},
        "concurrent": {"ratio_vs_tftpd_hpa": ratio(ours.get("concurrent_MBps"), hpa.get("concurrent_MBps")),
                       **{f"{k}_MBps": v.get("concurrent_MBps") for k, v in results.items()},
                       **{f"{k}_p99_s": v.get("concurrent_p99_s") for k, v in results.items()}},
        "http_vs_tftp": ratio(ours.get("kernel_initrd_http_MBps"), ours.get("kernel_initrd_tftp_MBps")),
        "kernel_initrd": {"http_MBps": ours.get("kernel_initrd_http_MBps"),
                          "tftp_MBps": ours.get("kernel_initrd_tftp_MBps")},
        "errors": {k: v["error"] for k, v in results.items() if "error" in v},
    }
    print(f"{'server':<10} {'single':>8} {'window16':>9} {'32x16MiB':>9} {'p99 s':>6}   (MB/s)")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<10} error: {r['error']}")
        else:
            print(f"{name:<10} {r.get('single_MBps', '-'):>8} {r.get('windowed16_MBps', '-'):>9} "
                  f"{r.get('concurrent_MBps', '-'):>9} {r.get('concurrent_p99_s', '-'):>6}")
    print(json.dumps(summary))
    # A ratio needs both sides: a failed server (ours or the peer) fails the benchmark.
    broken = [name for name in ("ours", "tftpd_hpa") if name in servers and "error" in results.get(name, {})]
    if broken:
        sys.exit(f"bench/tftp.py: {', '.join(broken)} failed; no ratio for it")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


if __name__ == "__main__":
    main()
