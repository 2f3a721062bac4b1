"""Network namespaces that always clean up after themselves.

Every test, benchmark and demo that serves DHCP/TFTP/DNS does it inside
namespaces made here. Names carry the creating process id (si-<pid>-<name>)
so a sweep can remove what a killed run left behind, and teardown kills every
process still inside a namespace before deleting it.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "si-"


class CommandFailed(subprocess.CalledProcessError):
    """A child command failed; its message carries the child's own last words, not only its status."""

    def __str__(self) -> str:
        argv = [str(a) for a in self.cmd]
        if argv[:3] == ["ip", "netns", "exec"]:
            argv = argv[4:]
        # the last line of its error output (a traceback's exception, apt's E: line), else of its output
        said = next(([line.strip() for line in out.splitlines() if line.strip()]
                     for out in (self.stderr, self.stdout) if out and out.strip()), ["no output"])
        why = said[-1]
        return f"{' '.join(argv)} exited with {self.returncode}: {why}"


def run_checked(cmd: list[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """subprocess.run capturing text output; a failure raises CommandFailed with the child's message."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, **kw)
    if check and proc.returncode != 0:
        raise CommandFailed(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_checked(["ip", *args], check=check)


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_namespace(name: str) -> None:
    """Kill everything inside a namespace, then delete it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _ip("netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        if not pids:
            break
        deadline = time.time() + 3
        while time.time() < deadline and _ip("netns", "pids", name, check=False).stdout.split():
            time.sleep(0.05)
    _ip("netns", "delete", name, check=False)


def sweep_stale() -> list[str]:
    """Delete namespaces left by lab runs whose process is gone."""
    removed = []
    for name in list_namespaces():
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            kill_namespace(name)
            removed.append(name)
    return removed


def _with_broadcast(address: str) -> list[str]:
    """`ip addr add` words: IPv4 gets its broadcast address, as DHCP clients and ifconfig set
    it (without one, udp-receiver sends its hello to 0.0.0.0 and never joins a session)."""
    return [address, "brd", "+"] if "." in address and "/" in address else [address]


class Lab:
    """A set of namespaces torn down together (use as a context manager)."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def namespace(self, name: str) -> str:
        full = f"{PREFIX}{os.getpid()}-{name}"
        if len(full) > 40:
            raise ValueError(f"namespace name {full!r} too long")
        if full in list_namespaces():
            kill_namespace(full)
        _ip("netns", "add", full)
        self.namespaces.append(full)
        self.run(full, "ip", "link", "set", "lo", "up")
        return full

    # --- running things inside -----------------------------------------
    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float | None = 120,
            **kw) -> subprocess.CompletedProcess:
        return run_checked(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout, **kw)

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(proc)
        return proc

    # --- wiring --------------------------------------------------------
    def bridge(self, ns: str, name: str, address: str | None = None) -> str:
        self.run(ns, "ip", "link", "add", name, "type", "bridge")
        # A dumb switch: no IGMP snooping, so multicast (udpcast's sessions) reaches every
        # port whether or not a querier is about.
        self.run(ns, "ip", "link", "set", name, "type", "bridge", "forward_delay", "0", "mcast_snooping", "0")
        if address:
            self.run(ns, "ip", "addr", "add", *_with_broadcast(address), "dev", name)
        self.run(ns, "ip", "link", "set", name, "up")
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str,
             addr_a: str | None = None, addr_b: str | None = None,
             bridge_b: str | None = None) -> None:
        """A cable between two namespaces; optionally plug side b into a bridge."""
        tmp_a, tmp_b = f"va{os.getpid() % 100000}{len(self.namespaces)}", f"vb{os.getpid() % 100000}{len(self.namespaces)}"
        _ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _ip("link", "set", tmp_a, "netns", ns_a)
        _ip("link", "set", tmp_b, "netns", ns_b)
        self.run(ns_a, "ip", "link", "set", tmp_a, "name", if_a)
        self.run(ns_b, "ip", "link", "set", tmp_b, "name", if_b)
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            if addr:
                self.run(ns, "ip", "addr", "add", *_with_broadcast(addr), "dev", ifname)
            self.run(ns, "ip", "link", "set", ifname, "up")
        if bridge_b:
            self.run(ns_b, "ip", "link", "set", if_b, "master", bridge_b)

    def tap(self, ns: str, name: str, bridge: str) -> str:
        self.run(ns, "ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.run(ns, "ip", "link", "set", name, "master", bridge)
        self.run(ns, "ip", "link", "set", name, "up")
        return name

    def default_route(self, ns: str, via: str) -> None:
        self.run(ns, "ip", "route", "add", "default", "via", via)

    # --- teardown ------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in reversed(self.namespaces):
            kill_namespace(ns)
        self.namespaces.clear()
