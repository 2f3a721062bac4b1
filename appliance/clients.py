"""addclients: hostnames and addresses for a range of clients, and where they land.

`plan_clients` validates everything (names, ranges, image, conflicts) and
writes nothing; `apply_clients` then writes the hosts table, the hosts file
autoinstalling clients fetch (scripts_dir/hosts), /etc/hosts, and the links
`<hostname>.sh -> <image>.master`. A host whose .sh is a regular file (an
edited copy of the master script) keeps it.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from pathlib import Path

from services.atomicfile import write_atomic
from services.names import valid_domain, valid_image_name

from .autoinstall.render import write_master_script
from .config import Config, Pool
from .store.records import Host

MAX_CLIENTS = 65536
BACKUP_SUFFIX = ".beforesystemimager"
_BASENAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ClientsError(ValueError):
    """Bad input for addclients; the message is one line naming the argument."""


@dataclass(frozen=True)
class Client:
    hostname: str
    ip: str | None       # None: no address (Section 3 skipped)
    fqdn: str


@dataclass
class ClientsPlan:
    image: str | None              # None: Section 2 skipped (no image, no links)
    domain: str
    clients: list[Client]
    unused_ranges: list[Pool] = field(default_factory=list)
    master_missing: bool = False   # the image is in the store but has no master script yet


def parse_range(text: str) -> Pool:
    """'10.0.0.1-10.0.0.99' (or one address) -> Pool."""
    parts = [p.strip() for p in str(text).split("-")]
    if len(parts) not in (1, 2) or not all(parts):
        raise ClientsError(f"--ip-range: {text!r} is not a range like 10.0.0.1-10.0.0.99")
    try:
        first = IPv4Address(parts[0])
        last = IPv4Address(parts[-1])
    except ValueError:
        raise ClientsError(f"--ip-range: {text!r} does not hold IPv4 addresses") from None
    if first > last:
        raise ClientsError(f"--ip-range: {text} runs backwards")
    for ip in (first, last):
        if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved or ip == IPv4Address("255.255.255.255"):
            raise ClientsError(f"--ip-range: {ip} cannot be a client's address")
    return Pool(first, last)


def hostnames(basename: str, start: int, end: int) -> list[str]:
    base = basename.strip().lower()
    if not _BASENAME.match(base):
        raise ClientsError(f"--basename: {basename!r} is not a host name start (letters, digits, '-')")
    if start < 0 or end < 0:
        raise ClientsError("--start/--end: numbers must not be negative")
    if start > end:
        raise ClientsError(f"--start/--end: {start} is after {end}")
    if end - start + 1 > MAX_CLIENTS:
        raise ClientsError(f"--start/--end: {end - start + 1} hosts is more than {MAX_CLIENTS}")
    longest = f"{base}{end}"
    if len(longest) > 63:
        raise ClientsError(f"--basename: {longest!r} is longer than a host name may be (63)")
    return [f"{base}{n}" for n in range(start, end + 1)]


def _check_ranges(cfg: Config, ranges: list[Pool]) -> None:
    seen_subnets: dict[str, Pool] = {}
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                raise ClientsError(f"--ip-range: {a} and {b} overlap")
        if cfg.subnets:
            subnet = cfg.subnet_for(a.first)
            if subnet is None:
                raise ClientsError(f"--ip-range: {a.first} is in none of the configured subnets "
                                   f"({', '.join(str(s.network) for s in cfg.subnets)})")
            net = subnet.network
            if a.last not in net:
                raise ClientsError(f"--ip-range: {a} overflows subnet {net}")
            for ip in (net.network_address, net.broadcast_address):
                if a.first <= ip <= a.last:
                    raise ClientsError(f"--ip-range: {a} includes {ip}, the network or broadcast address of {net}")
            if str(net) in seen_subnets:
                raise ClientsError(f"--ip-range: {seen_subnets[str(net)]} and {a} are both in subnet {net}; "
                                   "give one range per subnet")
            seen_subnets[str(net)] = a


def plan_clients(cfg: Config, store, *, domain: str | None, basename: str, start: int, end: int,
                 image: str | None, ranges: list[str] | None) -> ClientsPlan:
    """Validate and assign; raises ClientsError with nothing written.

    image None and ranges None are the manual's skipped sections 2 and 3: the hosts are
    recorded without an image (no links) or without addresses (no hosts file entries)."""
    domain = (domain or cfg.domain).strip().lower().rstrip(".")
    if not valid_domain(domain):
        raise ClientsError(f"--domain: {domain!r} is not a valid DNS domain")
    names = hostnames(basename, start, end)
    has_master = False
    if image is not None:
        if not valid_image_name(image):
            raise ClientsError(f"--image: {image!r} is not a valid image name")
        has_master = (cfg.scripts_dir / f"{image}.master").exists()
        if not has_master and store.image(image) is None:
            known = sorted({p.name[:-7] for p in cfg.scripts_dir.glob("*.master")} |
                           {i["name"] for i in store.images()})
            raise ClientsError(f"--image: no image {image!r} (known: {', '.join(known) or 'none'})")
    if ranges is None:
        return ClientsPlan(image=image, domain=domain, clients=[Client(n, None, f"{n}.{domain}") for n in names],
                           master_missing=image is not None and not has_master)
    if not ranges:
        raise ClientsError("--ip-range: give at least one range (FIRST-LAST), one per subnet")
    parsed = [parse_range(r) for r in ranges]
    _check_ranges(cfg, parsed)
    total = sum(r.size for r in parsed)
    if total < len(names):
        raise ClientsError(f"--ip-range: {len(names)} hosts ({names[0]}..{names[-1]}) but only {total} addresses")

    ips: list[IPv4Address] = []
    unused: list[Pool] = []
    for r in parsed:
        if len(ips) >= len(names):
            unused.append(r)
            continue
        take = min(r.size, len(names) - len(ips))
        ips.extend(r.first + k for k in range(take))
    server = {cfg.address, cfg.hint_address}
    ours = set(names)
    for name, ip in zip(names, ips):
        if ip in server:
            raise ClientsError(f"--ip-range: {ip} (for {name}) is the install server's own address")
        holder = store.host_by_ip(str(ip))
        if holder is not None and holder.hostname not in ours:
            raise ClientsError(f"--ip-range: {ip} (for {name}) already belongs to host {holder.hostname}")
    clients = [Client(n, str(ip), f"{n}.{domain}") for n, ip in zip(names, ips)]
    return ClientsPlan(image=image, domain=domain, clients=clients, unused_ranges=unused,
                       master_missing=not has_master)


# --- files -------------------------------------------------------------------

def read_hosts_file(text: str) -> dict[str, str]:
    """An /etc/hosts-format file -> {short name: fqdn} for lines of 'IP fqdn short'."""
    out = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and "." in fields[1]:
            out[fields[2]] = fields[1]
    return out


OTHERS = "# Other entries of the server's hosts file (the manual's addclients copied /etc/hosts):"


def other_entries(text: str, hosts: list[Host]) -> list[str]:
    """The lines of an /etc/hosts-format text that are not about the hosts table's machines
    (their addresses or names): the server, routers, other services, localhost."""
    ips = {h.ip for h in hosts if h.ip}
    names = {h.hostname for h in hosts}
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or fields[0] in ips:
            continue
        keep = [n for n in fields[1:] if n.split(".")[0] not in names]   # a table host's name: its line says it
        if keep:
            out.append("\t".join([fields[0], *keep]))
    return out


def kept_entries(scripts_hosts: str) -> str:
    """The other entries a scripts/hosts file carries (after its OTHERS line), as text."""
    _, marker, rest = scripts_hosts.partition(OTHERS + "\n")
    return rest if marker else ""


def render_hosts_file(hosts: list[Host], fqdns: dict[str, str], domain: str, others: str = "") -> str:
    """The hosts file clients fetch: one `IP fqdn short` line per host with an address, then
    the other entries of `others` (an /etc/hosts-format text), as the manual's copy had them."""
    def key(h: Host) -> tuple[int, str]:
        try:
            return int(ipaddress.IPv4Address(h.ip)), ""
        except ValueError:
            return 1 << 33, h.ip or ""
    rows = sorted((h for h in hosts if h.ip), key=key)
    lines = ["# Written by si addclients from the hosts table; autoinstalling clients find",
             "# their name here by exact IP match. Do not edit: it is rewritten."]
    lines += [f"{h.ip}\t{fqdns.get(h.hostname, f'{h.hostname}.{domain}')}\t{h.hostname}" for h in rows]
    rest = other_entries(others, hosts)
    if rest:
        lines += [OTHERS, *rest]
    return "\n".join(lines) + "\n"


def rewrite_etc_hosts(text: str, clients: list[Client]) -> str:
    """Rewrite lines of our IPs in place, append new ones, and never duplicate a name."""
    by_ip = {c.ip: c for c in clients}
    names = {n for c in clients for n in (c.fqdn, c.hostname)}
    out: list[str] = []
    written: set[str] = set()
    for line in text.splitlines():
        body, hashmark, comment = line.partition("#")
        fields = body.split()
        if not fields:
            out.append(line)
            continue
        ip = fields[0]
        if ip in by_ip:
            if ip not in written:   # a second line for the same IP is dropped
                c = by_ip[ip]
                out.append(f"{c.ip}\t{c.fqdn}\t{c.hostname}")
                written.add(ip)
            continue
        keep = [n for n in fields[1:] if n not in names]
        if len(keep) == len(fields) - 1:
            out.append(line)
        elif keep:                  # another IP carried one of our names: drop just the name
            out.append(f"{ip}\t{' '.join(keep)}" + (f"\t#{comment}" if hashmark else ""))
    for c in clients:
        if c.ip not in written:
            out.append(f"{c.ip}\t{c.fqdn}\t{c.hostname}")
    return "\n".join(out) + "\n"


def _link(scripts_dir: Path, hostname: str, image: str) -> str:
    """<hostname>.sh -> <image>.master; 'kept' when an edited copy is there."""
    path = scripts_dir / f"{hostname}.sh"
    target = f"{image}.master"
    if path.exists() and not path.is_symlink():
        return "kept"
    if path.is_symlink() and os.readlink(path) == target:
        return "same"
    tmp = scripts_dir / f".{hostname}.sh.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)
    return "linked"


@dataclass
class ClientsResult:
    hosts: int
    linked: list[str]
    kept: list[str]
    hosts_file: Path
    etc_hosts: Path | None


def apply_clients(cfg: Config, store, plan: ClientsPlan, etc_hosts: Path | None) -> ClientsResult:
    """Write everything for a validated plan."""
    if plan.master_missing:
        try:
            write_master_script(cfg, store, plan.image)
        except Exception as exc:  # links may dangle until getimage writes it
            store.event("addclients", "warning", f"no master script for {plan.image}: {exc}")
    for c in plan.clients:      # a skipped section leaves what the host had
        old = store.host(c.hostname) or Host(hostname=c.hostname)
        store.upsert_host(replace(old, ip=c.ip or old.ip, image=plan.image or old.image))

    hosts_file = cfg.scripts_dir / "hosts"
    try:
        before = hosts_file.read_text(errors="replace")
    except OSError:
        before = ""
    fqdns = read_hosts_file(before)
    fqdns.update({c.hostname: c.fqdn for c in plan.clients})
    current = ""
    if etc_hosts is not None:
        try:
            current = etc_hosts.read_text(errors="replace")
        except FileNotFoundError:
            current = ""
    # the other entries come from the server's hosts file when addclients edits one, else
    # they stay what the last copy had
    write_atomic(hosts_file, render_hosts_file(store.hosts(), fqdns, cfg.domain,
                                               current if etc_hosts is not None else kept_entries(before)))

    if etc_hosts is not None:
        backup = etc_hosts.with_name(etc_hosts.name + BACKUP_SUFFIX)
        if etc_hosts.exists() and not backup.exists():
            shutil.copy2(etc_hosts, backup)
        new = rewrite_etc_hosts(current, [c for c in plan.clients if c.ip])
        mode = etc_hosts.stat().st_mode & 0o7777 if etc_hosts.exists() else 0o644
        try:
            write_atomic(etc_hosts, new, mode)
        except OSError:
            etc_hosts.write_text(new)  # a bind-mounted /etc/hosts cannot be replaced, only rewritten

    linked, kept = [], []
    for c in plan.clients if plan.image else []:
        outcome = _link(cfg.scripts_dir, c.hostname, plan.image)
        (kept if outcome == "kept" else linked).append(c.hostname)
    store.event("addclients", "hosts",
                f"{plan.clients[0].hostname}..{plan.clients[-1].hostname} -> {plan.image or 'no image'}")
    return ClientsResult(len(plan.clients), linked, kept, hosts_file, etc_hosts)


def remove_host(cfg: Config, store, hostname: str) -> list[str]:
    """Delete a host: its row, its scripts/<host>.sh link and its scripts/hosts line.

    An edited <host>.sh (a file, not the link addclients made) is the admin's
    work and stays; what was done is returned, one line each."""
    notes = []
    if not store.delete_host(hostname):
        return notes
    notes.append(f"{hostname}: removed from the hosts table (no reservation, boot config or DNS name)")
    script = cfg.scripts_dir / f"{hostname}.sh"
    if script.is_symlink():
        script.unlink()
        notes.append(f"removed {script}")
    elif script.exists():
        notes.append(f"kept {script}: an edited copy, not addclients' link")
    hosts_file = cfg.scripts_dir / "hosts"
    try:
        before = hosts_file.read_text(errors="replace")
    except OSError:
        before = ""
    write_atomic(hosts_file, render_hosts_file(store.hosts(), read_hosts_file(before), cfg.domain,
                                               kept_entries(before)))
    store.event("hosts", "delete", hostname)
    return notes
