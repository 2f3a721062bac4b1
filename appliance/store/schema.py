"""Versioned schema migrations. Append a migration; never edit a shipped one."""
from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE hosts (
        hostname TEXT PRIMARY KEY,
        mac      TEXT UNIQUE,
        ip       TEXT UNIQUE,
        image    TEXT,
        grp      TEXT,
        netboot  TEXT NOT NULL DEFAULT 'install' CHECK (netboot IN ('install', 'local')),
        created  REAL NOT NULL,
        updated  REAL NOT NULL
    );
    CREATE TABLE leases (
        mac      TEXT PRIMARY KEY,
        ip       TEXT NOT NULL UNIQUE,
        hostname TEXT,
        expires  REAL NOT NULL,
        state    TEXT NOT NULL DEFAULT 'bound'
    );
    CREATE TABLE images (
        name          TEXT PRIMARY KEY,
        golden_client TEXT,
        ip_method     TEXT,
        post_install  TEXT,
        created       REAL NOT NULL
    );
    CREATE TABLE image_versions (
        image    TEXT NOT NULL REFERENCES images(name) ON DELETE CASCADE,
        version  INTEGER NOT NULL,
        path     TEXT NOT NULL,
        state    TEXT NOT NULL DEFAULT 'incomplete' CHECK (state IN ('incomplete', 'complete')),
        parent   INTEGER,
        size     INTEGER,
        created  REAL NOT NULL,
        PRIMARY KEY (image, version)
    );
    CREATE TABLE installs (
        id       INTEGER PRIMARY KEY,
        hostname TEXT NOT NULL,
        image    TEXT,
        state    TEXT NOT NULL DEFAULT 'running',
        phase    TEXT,
        percent  REAL NOT NULL DEFAULT 0,
        bytes    INTEGER NOT NULL DEFAULT 0,
        started  REAL NOT NULL,
        finished REAL,
        log      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX installs_by_host ON installs(hostname, started);
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY,
        ts     REAL NOT NULL,
        source TEXT NOT NULL,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: serial console per host (manual 13.5 by configuration); updates share the
    # installs table, so record which kind of run each row is.
    """
    ALTER TABLE hosts ADD COLUMN console TEXT;
    ALTER TABLE installs ADD COLUMN kind TEXT NOT NULL DEFAULT 'install';
    """,
    # 3: when a run last reported, so one whose machine went silent can be marked failed.
    """
    ALTER TABLE installs ADD COLUMN updated REAL;
    """,
    # 4: the host an event is about, so 'si events --host' and a host's history read it.
    """
    ALTER TABLE events ADD COLUMN host TEXT;
    CREATE INDEX events_by_host ON events (host, id);
    """,
]

LATEST = len(MIGRATIONS)
