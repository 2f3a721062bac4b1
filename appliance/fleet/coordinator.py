"""The fleet's state and its engines' processes, for one appliance.

An image version is packed (services.fleet.pack) once, in a thread, the first
time a fleet transport needs it or when it becomes current; until the pack is
ready machines are told to use rsync. The tracker and the seeders start on the
first BitTorrent install and a udp-sender session on the first multicast one;
all of them die with the appliance.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.children import end_group, spawn
from services.fleet import multicast, pack, swarm
from services.fleet.pack import Pack

log = logging.getLogger("si.fleet")


@dataclass
class Session:
    """One udp-sender run for one image version."""
    image: str
    version: int
    portbase: int
    proc: asyncio.subprocess.Process
    state: str = "waiting"            # waiting -> sending -> done
    joined: list[str] = field(default_factory=list)


SAFE = "._:/ ,()-"   # what a value may hold besides letters and digits (the master script's reader)


@dataclass
class Plan:
    """What a machine is told (key=value lines, read by the master script as data)."""
    transport: str
    detail: str = ""
    values: dict[str, str | int] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"transport={self.transport}"] + [f"{k}={v}" for k, v in self.values.items()]
        if self.detail:
            lines.append("detail=" + "".join(c if c.isalnum() or c in SAFE else "_" for c in self.detail))
        return "\n".join(lines) + "\n"


# How often the seeders' connections are counted. The seeder drops a connection once the
# peer has every piece, and what it sent since the last look is not counted: the split a
# machine is told is a lower bound for the appliance's share.
SAMPLE_SECONDS = 0.25
IDLE_SAMPLE_SECONDS = 2.0    # while the seeders have no connection at all


def packs_root(config) -> Path:
    return config.state_dir / "packs"


def pack_dir(config, image: str, version: int) -> Path:
    """Where image:version's stream, torrent and pack.json live."""
    return packs_root(config) / image / str(version)


class Fleet:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.packing: dict[tuple[str, int], asyncio.Task] = {}
        self.pack_errors: dict[tuple[str, int], str] = {}
        self.tracker: asyncio.subprocess.Process | None = None
        self.seeders: dict[tuple[str, int], asyncio.subprocess.Process] = {}
        self.uploaded: dict[tuple[str, int], int] = {}   # bytes each seeder has given the swarm
        # bytes each seeder's connections had acknowledged, by (pid, local, peer): the kernel's
        # count, sampled with ss, so a machine can be told what came from the appliance
        self._acked: dict[tuple[int, str, str], int] = {}
        self._sampler: asyncio.Task | None = None
        self.sessions: dict[str, Session] = {}
        self.counters = {"plans": 0, "packs": 0, "pack_failures": 0, "sessions": 0, "fallbacks": 0}
        self._lock = asyncio.Lock()

    # --- settings and places ---------------------------------------------------
    @property
    def settings(self):
        return self.ctx.config.fleet

    @property
    def root(self) -> Path:
        return packs_root(self.ctx.config)

    def announce(self) -> str:
        return swarm.announce_url(str(self.ctx.config.hint_address), self.settings.tracker_port)

    def pack_dir(self, image: str, version: int) -> Path:
        return pack_dir(self.ctx.config, image, version)

    def ready_pack(self, image: str, version: int) -> Pack | None:
        p = pack.read(self.pack_dir(image, version))
        return p if p is not None and p.announce == self.announce() else None

    # --- packing -------------------------------------------------------------
    def want_pack(self, image: str, version: int, tree: Path) -> str:
        """Start packing unless ready or under way; says where it stands."""
        key = (image, version)
        if self.ready_pack(image, version) is not None:
            return "ready"
        task = self.packing.get(key)
        if task is not None and not task.done():
            return "packing"
        self.packing[key] = asyncio.get_running_loop().create_task(self._pack(image, version, tree))
        return "packing"

    async def _pack(self, image: str, version: int, tree: Path) -> None:
        started = time.monotonic()
        try:
            p = await asyncio.to_thread(pack.build, tree, self.pack_dir(image, version), self.announce())
        except (pack.PackError, OSError) as exc:
            self.counters["pack_failures"] += 1
            self.pack_errors[(image, version)] = str(exc)
            self.ctx.store.event("fleet", "pack_failed", f"{image}:{version}: {exc}")
            log.error("packing %s:%d failed: %s", image, version, exc)
            return
        self.counters["packs"] += 1
        self.pack_errors.pop((image, version), None)
        detail = (f"{image}:{version} packed for bittorrent and multicast: {p.size} bytes "
                  f"in {time.monotonic() - started:.1f} s")
        self.ctx.store.event("fleet", "packed", detail)
        log.info("%s", detail)
        for old in self.root.joinpath(image).glob("*"):   # older versions' packs are not served again
            if old.name.isdigit() and old.name != str(version):
                await asyncio.to_thread(shutil.rmtree, old, True)

    # --- the swarm -------------------------------------------------------------
    async def _write_whitelist(self) -> Path:
        directory = self.ctx.config.run_dir / "tracker"
        directory.mkdir(parents=True, exist_ok=True)
        hashes = [p.info_hash for key in self.seeders if (p := self.ready_pack(*key)) is not None]
        (directory / swarm.WHITELIST).write_text(swarm.whitelist_text(hashes))
        os.chmod(directory / swarm.WHITELIST, 0o644)
        return directory

    async def _seed(self, image: str, version: int, p: Pack) -> None:
        key = (image, version)
        if key in self.seeders and self.seeders[key].returncode is None:
            return
        port = self.settings.peer_port + len(self.seeders) % 64
        argv = swarm.seeder_argv(p.torrent, p.directory, str(self.ctx.config.hint_address), port)
        self.seeders[key] = await spawn(argv, read_stdout=True)
        asyncio.get_running_loop().create_task(self._count_uploads(key, self.seeders[key]))
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._sample_connections())
        directory = await self._write_whitelist()
        if self.tracker is None or self.tracker.returncode is not None:
            self.tracker = await spawn(swarm.tracker_argv(str(self.ctx.config.hint_address),
                                                           self.settings.tracker_port, directory))
            await asyncio.sleep(0.2)
        else:
            self.tracker.send_signal(signal.SIGHUP)   # opentracker re-reads its whitelist
        self.ctx.store.event("fleet", "seeding", f"{image}:{version} on port {port}")

    async def _count_uploads(self, key: tuple[str, int], proc) -> None:
        """Follow the seeder's readout: what the appliance gave the swarm, beside what the
        machines took (the rest came from their peers)."""
        async for raw in proc.stdout:
            done = swarm.uploaded_of(raw.decode(errors="replace"))
            if done is not None:
                self.uploaded[key] = done

    async def sample_connections(self) -> int:
        """One look at the seeders' TCP connections (ss): keep each one's largest count;
        returns how many there were."""
        pids = {proc.pid for proc in self.seeders.values() if proc.returncode is None}
        if not pids:
            return 0
        try:
            proc = await asyncio.create_subprocess_exec(*swarm.SS_ARGV, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
        except OSError:          # no ss (iproute2): the split is not known, nothing else changes
            return 0
        found = swarm.acked_by_connection(out.decode(errors="replace"), pids)
        for conn, acked in found.items():
            self._acked[conn] = max(acked, self._acked.get(conn, 0))
        return len(found)

    async def _sample_connections(self) -> None:
        while any(proc.returncode is None for proc in self.seeders.values()):
            busy = await self.sample_connections()
            await asyncio.sleep(SAMPLE_SECONDS if busy else IDLE_SAMPLE_SECONDS)

    async def sent_to(self, image: str, version: int, address: str) -> int:
        """Bytes the appliance's seeder of image:version has sent the machine at address."""
        await self.sample_connections()
        proc = self.seeders.get((image, version))
        if proc is None:
            return 0
        return sum(n for (pid, _local, peer), n in self._acked.items()
                   if pid == proc.pid and swarm.peer_address(peer) == address)

    # --- multicast ---------------------------------------------------------------
    async def _join(self, image: str, version: int, p: Pack) -> Session:
        s = self.sessions.get(image)
        if s is not None and s.state == "waiting" and s.version == version and s.proc.returncode is None:
            return s
        used = {x.portbase for x in self.sessions.values() if x.proc.returncode is None}
        ports = [self.settings.multicast_portbase + 2 * i for i in range(multicast.SESSIONS)]
        free = [port for port in ports if port not in used]
        if not free:
            raise RuntimeError("every multicast session port pair is in use")
        argv = multicast.sender_argv(p.stream, self.ctx.config.interface, free[0], self.settings)
        argv += ["--start-timeout", str(self.settings.max_wait + self.settings.join_timeout)]
        s = Session(image, version, free[0], await spawn(argv))
        self.sessions[image] = s
        self.counters["sessions"] += 1
        asyncio.get_running_loop().create_task(self._watch(s))
        self.ctx.store.event("fleet", "session", f"{image}:{version} multicast session on port {s.portbase}")
        return s

    async def _watch(self, s: Session) -> None:
        async for raw in s.proc.stderr:
            line = raw.decode(errors="replace").strip()
            event = multicast.event_of(line)
            if event is None:
                continue
            kind, who = event
            if kind == "joined":
                s.joined.append(who)
            elif kind == "started":
                s.state = "sending"
                self.ctx.store.event("fleet", "sending", f"{s.image}:{s.version} to {len(s.joined)} "
                                     f"receiver(s) on port {s.portbase}")
            elif kind == "done":
                s.state = "done"
        status = await s.proc.wait()
        s.state = "done"
        self.ctx.store.event("fleet", "session_end", f"{s.image}:{s.version} port {s.portbase}: "
                             f"udp-sender exited {status}")

    # --- the answer to an installing machine --------------------------------------
    async def plan(self, image: str, host: str, asked: str | None = None) -> Plan:
        self.counters["plans"] += 1
        s = self.settings
        row = self.ctx.store.host(host)
        transport = s.transport_for(image, row.grp if row else None, asked)
        if transport == "rsync":
            return Plan("rsync")
        if not self.ctx.config.enabled("fleet"):
            return self._fallback(transport, "the fleet service is off")
        current = self.ctx.store.latest_image_version(image)
        if current is None or current.get("state") != "complete":
            return self._fallback(transport, f"image {image} has no complete version")
        version = current["version"]
        async with self._lock:
            p = self.ready_pack(image, version)
            if p is None:
                error = self.pack_errors.get((image, version))
                if error:
                    return self._fallback(transport, f"packing failed: {error}")
                self.want_pack(image, version, Path(current["path"]))
                return self._fallback(transport, f"{image}:{version} is being packed")
            values: dict[str, str | int] = {"version": version, "stream_bytes": p.size,
                                             "join_timeout": s.join_timeout, "seed_seconds": s.seed_seconds}
            try:
                if transport == "bittorrent":
                    await self._seed(image, version, p)
                    values["torrent"] = f"/fleet/{image}/{version}/{pack.TORRENT}"
                    return Plan(transport, f"swarm of {image}:{version}, {p.size} bytes", values)
                session = await self._join(image, version, p)
            except (OSError, RuntimeError) as exc:
                return self._fallback(transport, str(exc))
            values["portbase"] = session.portbase
            return Plan(transport, f"session on port {session.portbase}", values)

    def _fallback(self, transport: str, why: str) -> Plan:
        self.counters["fallbacks"] += 1
        return Plan("rsync", f"{transport} not possible now: {why}, rsync this time")

    def status(self) -> dict:
        packs = []
        for d in sorted(self.root.glob("*/*")) if self.root.is_dir() else []:
            if d.name.isdigit():
                p = pack.read(d)
                packs.append({"image": d.parent.name, "version": int(d.name),
                              "state": "ready" if p else "packing", "bytes": p.size if p else None})
        for (image, version), task in self.packing.items():
            if not task.done() and not any(x["image"] == image and x["version"] == version for x in packs):
                packs.append({"image": image, "version": version, "state": "packing", "bytes": None})
        sessions = [{"image": x.image, "version": x.version, "port": x.portbase, "state": x.state,
                     "receivers": len(x.joined)} for x in self.sessions.values()]
        seeding = [f"{i}:{v}" for (i, v), proc in self.seeders.items() if proc.returncode is None]
        uploaded = {f"{i}:{v}": n for (i, v), n in self.uploaded.items()}
        return {"packs": packs, "sessions": sessions, "seeding": seeding, "seeder_uploaded_bytes": uploaded,
                "counters": dict(self.counters),
                "tracker": self.tracker is not None and self.tracker.returncode is None}

    async def close(self) -> None:
        for task in self.packing.values():
            task.cancel()
        for proc in [self.tracker, *self.seeders.values(), *(x.proc for x in self.sessions.values())]:
            await end_group(proc)
        self.seeders.clear()
        self.sessions.clear()
        self.tracker = None

