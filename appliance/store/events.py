"""An append-only event log: what happened, from which part, about which host, when."""
from __future__ import annotations


class EventsMixin:
    def event(self, source: str, kind: str, detail: str = "", host: str | None = None) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO events (ts, source, kind, detail, host) VALUES (?,?,?,?,?)",
                       (self.now(), source, kind, detail, host))

    def events(self, limit: int = 100, *, host: str | None = None, after: int = 0) -> list[dict]:
        """The newest `limit` events (of one host), oldest first; after: only those with a larger id."""
        where, args = "WHERE id > ?", [after]
        if host is not None:
            where += " AND host = ?"
            args.append(host)
        rows = self.query(f"SELECT id, ts, source, kind, host, detail FROM events {where} "
                          f"ORDER BY id DESC LIMIT ?", (*args, limit))
        return [dict(r) for r in reversed(rows)]

    def last_seen(self, host: str | None = None) -> dict[str, float]:
        """Each host's (or one host's) newest event time: its leases, PXE boots and install reports."""
        where, args = ("host = ?", (host,)) if host is not None else ("host IS NOT NULL", ())
        return {r["host"]: r["ts"] for r in self.query(
            f"SELECT host, max(ts) AS ts FROM events WHERE {where} GROUP BY host", args)}
