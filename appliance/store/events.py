"""An append-only event log: what happened, from which part, when."""
from __future__ import annotations


class EventsMixin:
    def event(self, source: str, kind: str, detail: str = "") -> None:
        with self.tx() as db:
            db.execute("INSERT INTO events (ts, source, kind, detail) VALUES (?,?,?,?)",
                       (self.now(), source, kind, detail))

    def events(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in self.query(
            "SELECT ts, source, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,))]
