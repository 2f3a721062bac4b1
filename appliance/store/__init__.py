"""Durable appliance state in one SQLite database (WAL).

One module owns the database: every read and write of hosts, leases, images,
installs and events goes through Store. WAL with synchronous=NORMAL survives a
kill -9 of the process at any instant (committed transactions are in the WAL
before commit returns); `durable=True` adds fsync per commit for power loss.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .schema import LATEST, MIGRATIONS
from .events import EventsMixin
from .hosts import HostsMixin
from .images import ImagesMixin
from .installs import InstallsMixin
from .leases import LeasesMixin


class StoreError(RuntimeError):
    """The state database cannot be opened or is from a newer version."""


class Store(HostsMixin, LeasesMixin, ImagesMixin, InstallsMixin, EventsMixin):
    def __init__(self, path: Path | str, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {path}: {exc}") from None
        self._lock = threading.RLock()
        self.migrate()

    # --- schema ----------------------------------------------------------
    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Bring the schema to LATEST; each step is one transaction."""
        current = self.version
        if current > LATEST:
            raise StoreError(f"state database {self.path} has schema {current}, newer than this "
                             f"program knows ({LATEST}); upgrade the appliance")
        for number in range(current, LATEST):
            with self.tx() as db:
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number + 1}")
        return self.version

    # --- transactions ----------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; commits on success, rolls back on error."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def data_version(self) -> int:
        """A number that moves whenever another connection (another process, or a writer thread)
        commits: the one way to ask "has someone else written?" (this connection's own writes are
        announced with Context.changed instead)."""
        with self._lock:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        self.db.close()

    def reconnect(self) -> "Store":
        """Another connection to the same database, for a thread that writes on its own."""
        return Store(self.path, durable=self.durable)

    @staticmethod
    def now() -> float:
        return time.time()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
