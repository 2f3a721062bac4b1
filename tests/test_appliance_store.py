"""The store: migrations from empty and from an older schema; records round-trip."""
from __future__ import annotations

import sqlite3

import pytest

from appliance.store import Store, StoreError
from appliance.store.records import Host, Lease, normalise_mac
from appliance.store.schema import LATEST, MIGRATIONS


def test_migrates_an_empty_database(tmp_path):
    store = Store(tmp_path / "a.db")
    assert store.version == LATEST
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"hosts", "leases", "images", "image_versions", "installs", "events"} <= tables
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_migrates_an_older_schema_keeping_rows(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO hosts (hostname, mac, ip, created, updated) VALUES ('www1', 'aa:bb:cc:dd:ee:01', '10.0.0.5', 0, 0)")
    db.commit()
    db.close()
    store = Store(path)
    assert store.version == LATEST
    host = store.host("www1")
    assert host.ip == "10.0.0.5" and host.console is None  # column added by migration 2
    store.upsert_host(Host("www1", mac=host.mac, ip=host.ip, console="ttyS0,115200n8"))
    assert store.host("www1").console == "ttyS0,115200n8"


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={LATEST + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(path)


def test_failed_migration_changes_nothing(tmp_path, monkeypatch):
    from appliance.store import schema
    path = tmp_path / "half.db"
    monkeypatch.setattr("appliance.store.MIGRATIONS", MIGRATIONS + ["CREATE TABLE x (a); THIS IS NOT SQL"])
    monkeypatch.setattr("appliance.store.LATEST", LATEST + 1)
    with pytest.raises(sqlite3.OperationalError):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert not db.execute("SELECT name FROM sqlite_master WHERE name='x'").fetchall()


def test_leases_batch_and_address_reuse(tmp_path):
    store = Store(tmp_path / "l.db")
    store.save_leases([Lease("aa:00:00:00:00:01", "10.0.0.100", "n1", 100.0),
                       Lease("aa:00:00:00:00:02", "10.0.0.101", None, 100.0)])
    # The address moves to another MAC: the stale row goes, never two owners.
    store.save_lease(Lease("aa:00:00:00:00:03", "10.0.0.100", None, 200.0))
    by_ip = {l.ip: l.mac for l in store.leases()}
    assert by_ip == {"10.0.0.100": "aa:00:00:00:00:03", "10.0.0.101": "aa:00:00:00:00:02"}


def test_install_progress_and_log_tail(tmp_path):
    store = Store(tmp_path / "i.db")
    run = store.start_install("www1", "img")
    store.update_install(run, phase="rsync", percent=40.0, bytes_done=1000, log_append="line1\n")
    store.update_install(run, state="succeeded", percent=100.0, log_append="done\n")
    rec = store.current_install("www1")
    assert (rec.state, rec.phase, rec.percent, rec.bytes) == ("succeeded", "rsync", 100.0, 1000)
    assert rec.log == "line1\ndone\n" and rec.finished is not None


@pytest.mark.parametrize("text,expected", [
    ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"), ("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
    ("aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff")])
def test_mac_normalisation(text, expected):
    assert normalise_mac(text) == expected


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff:00", "aa bb cc dd ee ff"])
def test_bad_macs_refused(text):
    with pytest.raises(ValueError):
        normalise_mac(text)
