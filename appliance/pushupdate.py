"""pushupdate: run updateclient on many installed clients over ssh.

The manual's pushupdate "logs into each client and executes updateclient".
Here with a concurrency limit, a per-host timeout, and a verdict per host:
ok, failed (updateclient said no), unreachable (ssh could not connect) or
timeout. ssh exits 255 for its own failures, so that is how the two differ.
"""
from __future__ import annotations

import asyncio
import fnmatch
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .store import Store

SSH_FAILED = 255


@dataclass(frozen=True)
class Target:
    hostname: str
    address: str


@dataclass(frozen=True)
class Result:
    hostname: str
    status: str          # ok | failed | unreachable | timeout
    exit_code: int | None
    seconds: float
    output: str          # the tail of what the remote side printed

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class SshOptions:
    user: str = "root"
    port: int = 22
    key: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = 5

    def argv(self, address: str) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "StrictHostKeyChecking=accept-new", "-p", str(self.port), "-l", self.user]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.key:
            argv += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        return argv + [address]


def select_targets(store: Store, pattern: str | None = None, group: str | None = None) -> list[Target]:
    """Hosts whose name matches the glob pattern and/or belong to the group."""
    targets = []
    for host in store.hosts():
        if pattern and not fnmatch.fnmatchcase(host.hostname, pattern):
            continue
        if group and host.grp != group:
            continue
        targets.append(Target(host.hostname, host.ip or host.hostname))
    return targets


def updateclient_command(server: str, image: str, *, dry_run: bool = False,
                         command: str = "updateclient") -> str:
    words = shlex.split(command) + ["--server", server, "--image", image]
    if dry_run:
        words.append("--dry-run")
    return shlex.join(words)


async def _push_one(target: Target, remote: str, ssh: SshOptions, timeout: float) -> Result:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *ssh.argv(target.address), remote, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return Result(target.hostname, "timeout", None, time.monotonic() - started,
                      f"no answer within {timeout:.0f}s")
    text = output.decode("utf-8", "replace")
    tail = "\n".join(text.strip().splitlines()[-20:])
    code = proc.returncode
    status = "ok" if code == 0 else ("unreachable" if code == SSH_FAILED else "failed")
    return Result(target.hostname, status, code, time.monotonic() - started, tail)


async def push(targets: list[Target], remote: str, ssh: SshOptions, *, concurrency: int = 10,
               timeout: float = 600, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def guarded(target: Target) -> Result:
        async with gate:
            result = await _push_one(target, remote, ssh, timeout)
        if on_result:
            on_result(result)
        return result

    return list(await asyncio.gather(*(guarded(t) for t in targets)))
