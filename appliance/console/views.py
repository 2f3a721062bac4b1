"""What the console shows, as plain dicts built from the store: hosts with their state,
images with their versions and users, installs without their logs.

A host's state is a function of its record and its newest install run:
  installing  its newest install run is running
  failed      that run failed and it has not been set to boot its disk since
  installed   it boots its own disk (after an install, or because an operator said so)
  assigned    it has an image and its next PXE boot installs it
  unknown     it has no image: nothing would be installed
"""
from __future__ import annotations

from ..bootconfig import decide
from ..config import Config
from ..monitor import install_row
from ..store.installs import SUMMARY_TAIL
from ..store.records import Host, Install

STATES = ("unknown", "assigned", "installing", "installed", "failed")


def host_state(host: Host, last_install: Install | None) -> str:
    if last_install is not None and last_install.state == "running":
        return "installing"
    if host.netboot == "local":
        return "installed"
    if not host.image:
        return "unknown"
    if last_install is not None and last_install.state == "failed":
        return "failed"
    return "assigned"


def host_view(host: Host, cfg: Config, last_install: Install | None, last_seen: float | None) -> dict:
    seen = max(filter(None, (last_seen, last_install and (last_install.updated or last_install.started))),
               default=None)
    return {**host.as_dict(), "state": host_state(host, last_install), "last_seen": seen,
            "next_boot": decide(host, cfg).reason,
            "transport": cfg.fleet.transport_for(host.image, host.grp) if host.image else None,
            "last_install": install_summary(last_install) if last_install else None}


def install_summary(run: Install) -> dict:
    """A run as the monitor computes it, without its log (the log has its own route)."""
    row = install_row(run)
    row.pop("log")
    row["log_size"] = run.log_size
    return row


def hosts_view(store, cfg: Config) -> list[dict]:
    latest, seen = store.latest_installs(tail=SUMMARY_TAIL), store.last_seen()
    return [host_view(h, cfg, latest.get(h.hostname), seen.get(h.hostname)) for h in store.hosts()]


def one_host_view(store, cfg: Config, hostname: str) -> dict | None:
    host = store.host(hostname)
    if host is None:
        return None
    view = host_view(host, cfg, store.latest_installs(hostname, tail=SUMMARY_TAIL).get(hostname),
                     store.last_seen(hostname).get(hostname))
    lease = store.lease_for_mac(host.mac) if host.mac else None
    view["lease"] = lease.as_dict() if lease else None
    view["runs"] = [install_summary(r) for r in store.installs(hostname=hostname, tail=SUMMARY_TAIL)]
    return view


def unenrolled_machines(store) -> list[dict]:
    """Machines DHCP gave an address to that no host record names (candidates for `si hosts set`)."""
    known = {h.mac for h in store.hosts() if h.mac}
    return [l.as_dict() for l in store.leases() if l.mac not in known]


def images_view(store) -> list[dict]:
    users: dict[str, list[str]] = {}
    for h in store.hosts():
        if h.image:
            users.setdefault(h.image, []).append(h.hostname)
    out = []
    for image in store.images():
        versions = [{k: v[k] for k in ("version", "state", "size", "created", "parent")}
                    for v in store.image_versions(image["name"])]
        out.append({**image, "version_list": versions, "hosts": users.get(image["name"], [])})
    return out


def log_from(run: Install, offset: int) -> dict:
    """The part of a run's log from character `offset` on (the console's tail asks for what is new).

    The store keeps a run's last LOG_LIMIT characters, so an offset past the end means the client
    saw a longer log than is kept now (it was cut at the front): it gets the whole of what is kept."""
    text = run.log
    offset = offset if 0 <= offset <= len(text) else 0
    return {**install_summary(run), "offset": offset, "log": text[offset:]}
