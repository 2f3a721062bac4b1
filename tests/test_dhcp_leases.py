"""Lease bookkeeping: the in-memory book, the group-commit writer, the hosts copy."""
from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address as IP

from appliance.config import parse
from appliance.store import Store
from appliance.store.records import Host, Lease
from services.dhcp import hosts as hosts_mod
from services.dhcp.hosts import HostDirectory
from services.dhcp.leases import Binding, LeaseBook, LeaseWriter

CFG = parse({"interface": "br0", "address": "10.0.0.1",
             "subnet": [{"network": "10.0.0.0/24", "pools": ["10.0.0.10-10.0.0.12"]}]})
SUBNET = CFG.subnets[0]
NOBODY = lambda ip: False  # noqa: E731


def test_book_allocates_recycles_and_reloads():
    now = time.time()
    book = LeaseBook(CFG.subnets)
    got = [book.allocate(SUBNET, f"m{i}", now, NOBODY) for i in range(3)]
    for i, ip in enumerate(got):
        book.set(f"m{i}", ip, None, now + 60, "bound")
    assert got == [IP("10.0.0.10"), IP("10.0.0.11"), IP("10.0.0.12")]
    assert book.allocate(SUBNET, "m9", now, NOBODY) is None            # full
    book.release(book.for_mac("m1"), now)
    assert book.allocate(SUBNET, "m9", now, NOBODY) == IP("10.0.0.11")  # released: reusable now
    book.set("m9", IP("10.0.0.11"), None, now + 60, "bound")
    assert book.allocate(SUBNET, "m8", now + 120, NOBODY) in got        # expired ones recycle
    # A reserved address is skipped.
    fresh = LeaseBook(CFG.subnets)
    assert fresh.allocate(SUBNET, "x", now, lambda ip: ip == IP("10.0.0.10")) == IP("10.0.0.11")
    # Loading stored leases makes their addresses unavailable to others.
    loaded = LeaseBook(CFG.subnets)
    loaded.load([Lease("m0", "10.0.0.10", None, now + 60), Lease("bad", "not-an-ip", None, now + 60)])
    assert loaded.allocate(SUBNET, "new", now, NOBODY) == IP("10.0.0.11")
    assert loaded.for_mac("m0").ip == IP("10.0.0.10") and loaded.for_mac("bad") is None


def test_writer_group_commits_and_calls_back_on_the_loop(tmp_path):
    store = Store(tmp_path / "db")

    async def run():
        loop = asyncio.get_running_loop()
        writer = LeaseWriter(store.reconnect, loop)
        done = []
        for i in range(200):
            b = Binding(f"02:00:00:00:00:{i:02x}", IP(f"10.1.0.{i + 1}"), None, time.time() + 60)
            writer.submit([b], lambda ok, i=i: done.append((i, ok)))
        while len(done) < 200:
            await asyncio.sleep(0.01)
        writer.close()
        return writer, done

    writer, done = asyncio.run(run())
    assert sorted(done) == [(i, True) for i in range(200)]
    # grouped: a commit takes far longer than a submit, so 200 submits in a row share commits
    assert writer.written == 200 and writer.commits < 100, writer.commits
    assert len(store.leases()) == 200


def test_host_directory_sees_changes_from_other_connections(tmp_path, monkeypatch):
    monkeypatch.setattr(hosts_mod, "RECHECK_SECONDS", 0.0)
    mine = Store(tmp_path / "db")
    other = Store(tmp_path / "db")
    hosts = HostDirectory(mine)
    hosts.refresh()
    assert hosts.host_by_mac("52:54:00:00:00:01") is None
    other.upsert_host(Host("n1", mac="52:54:00:00:00:01", ip="10.0.0.5"))
    hosts.refresh()
    assert hosts.host_by_mac("52:54:00:00:00:01").hostname == "n1"
    assert hosts.host_by_ip("10.0.0.5").hostname == "n1"
    other.delete_host("n1")
    hosts.refresh()
    assert hosts.host_by_mac("52:54:00:00:00:01") is None


def test_host_directory_rechecks_at_most_once_a_second(tmp_path, monkeypatch):
    # A recheck interval no slow machine can outlast between two calls: the test is about who
    # decides to look again (the clock, or this process's own invalidate), not about the 1 s.
    monkeypatch.setattr(hosts_mod, "RECHECK_SECONDS", 3600.0)
    mine, other = Store(tmp_path / "db"), Store(tmp_path / "db")
    hosts = HostDirectory(mine)
    hosts.refresh()
    other.upsert_host(Host("n2", mac="52:54:00:00:00:02"))
    hosts.refresh()
    assert hosts.host_by_mac("52:54:00:00:00:02") is None      # not yet: no recheck is due
    hosts.invalidate()                                          # this process changed hosts
    hosts.refresh()
    assert hosts.host_by_mac("52:54:00:00:00:02").hostname == "n2"
