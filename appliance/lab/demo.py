"""The README's main job: a lab install network in namespaces, on one machine.

It builds an appliance namespace with an install bridge, runs the real
`si up` there as a subprocess, shows its status table, and tears everything
down afterwards (also on failure or Ctrl-C). Nothing here touches the host's
own interfaces.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console

from .install_lab import InstallLab
from .netns import Lab

console = Console()


KEEP = ("*.log", "*.toml")      # consoles, QEMU's and the appliance's logs, the config


def prune_to_logs(workdir: Path) -> int:
    """Remove what a finished lab leaves (disks, the golden tree, the image store: hundreds of
    MB), keeping logs, consoles and the config; returns the bytes kept."""
    kept = 0
    for path in sorted(workdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_symlink() or path.is_file():
            if any(path.match(pattern) for pattern in KEEP):
                kept += path.stat().st_size
            else:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return kept


def demo_fleet(transport: str) -> dict | None:
    """The [fleet] table for a demo whose two machines install by `transport`: one multicast
    session for both (it starts when both have joined), a short seed time."""
    if transport == "rsync":
        return None
    return {"transport": transport, "seed_seconds": 10, "join_timeout": 90,
            "min_receivers": 2, "min_wait": 0, "max_wait": 120}


def transport_lines(run: dict) -> list[str]:
    """What an install's log says of how its image came (the master script's 'transport' lines)."""
    return [line.split("SystemImager: ", 1)[-1] for line in (run.get("log") or "").splitlines()
            if "transport " in line]


def run_demo(workdir: Path | None = None, keep_running: bool = False, transport: str = "rsync") -> int:
    """Appliance up, golden client captured, two machines PXE-installed (by `transport`) and booted."""
    from rich.live import Live

    from ..commands.status import print_status
    from ..monitor import render_table

    workdir = Path(workdir or tempfile.mkdtemp(prefix="si-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with Lab() as lab:
        ilab = InstallLab(lab, workdir, fleet=demo_fleet(transport))
        try:
            console.rule("[bold]SystemImager lab: an install network in namespaces")
            console.print("building the autoinstall kernel/initrd (cached after the first run) and "
                          "starting the appliance ...")
            print_status(ilab.up())
            console.print("golden client: building a small Debian-kernel system on a loop disk, "
                          "running prepareclient, then getimage ...")
            image = ilab.capture("demo_v1")
            console.print(f"image demo_v1 captured (version {image['latest']})")
            ilab.addclients("demo_v1", "node", 2)
            machines = [ilab.machine("node1", "52:54:00:77:00:11", firmware="bios"),
                        ilab.machine("node2", "52:54:00:77:00:12", firmware="uefi")]
            console.print(f"powering on node1 (BIOS) and node2 (UEFI); they PXE-boot and install by {transport}:")
            t = time.time()
            for m in machines:
                m.guest.start()
            done: dict[str, float] = {}
            with Live(render_table([]), console=console, refresh_per_second=2) as live:
                while len(done) < len(machines) and time.time() - t < 1200:
                    rows = ilab.api("/api/installs") or []
                    live.update(render_table(rows))
                    for r in rows:
                        if r["state"] == "failed":
                            raise RuntimeError(f"{r['hostname']} failed: {r['last_line']}")
                        if r["state"] == "succeeded":
                            done.setdefault(r["hostname"], time.time() - t)
                    time.sleep(1)
            if len(done) < len(machines):
                raise RuntimeError("installs did not finish within 20 minutes")
            ilab.timings["install (both, concurrently)"] = max(done.values())
            for run in (ilab.install_state(m.hostname) for m in machines):
                for line in transport_lines(run or {}):
                    console.print(f"  {run['hostname']}: {line}")
            t = time.time()
            for m in machines:
                booted = m.guest.wait_for(r"SI-GOLDEN-BOOTED hostname=(\S+) ip=(\S+) root=\S+ firmware=(\S+)", 300)
                console.print(f"[green]{m.hostname} booted its installed disk: hostname {booted.group(1)}, "
                              f"address {booted.group(2)}, firmware {booted.group(3)}")
            ilab.timings["reboot to installed system"] = time.time() - t
            moved = sum(r["bytes"] for r in ilab.api("/api/installs") or [])
            if keep_running:
                console.print(f"lab left running (consoles in {workdir}); Ctrl-C stops and cleans up")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        except Exception as exc:
            console.print(f"[red]lab demo failed: {exc}")
            console.print(f"logs and consoles kept in {workdir}")
            return 1
        finally:
            for m in locals().get("machines", []):
                m.guest.stop()
            ilab.close()
            if ilab.appliance:
                ilab.appliance.stop()
            kept = prune_to_logs(workdir)
    console.rule("[bold]summary")
    for name, seconds in ilab.timings.items():
        console.print(f"  {name:<34} {seconds:7.1f} s")
    console.print(f"  {'image bytes moved to machines':<34} {moved / 2**20:7.1f} MiB")
    console.print(f"  {'total':<34} {time.time() - started:7.1f} s")
    console.print(f"logs and consoles ({kept / 2**20:.1f} MiB) are kept in {workdir}; disks and the image "
                  f"store are gone")
    return 0
