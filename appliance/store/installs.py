"""Install and update runs: one row per run, progress updated in place."""
from __future__ import annotations

from .records import Install

_COLUMNS = "id, hostname, image, kind, state, phase, percent, bytes, started, finished, log"
LOG_LIMIT = 256 * 1024  # keep the tail of a run's log in the table; full logs go to log_dir


class InstallsMixin:
    def start_install(self, hostname: str, image: str | None, kind: str = "install") -> int:
        with self.tx() as db:
            cur = db.execute("INSERT INTO installs (hostname, image, kind, started) VALUES (?,?,?,?)",
                             (hostname, image, kind, self.now()))
            return cur.lastrowid

    def current_install(self, hostname: str) -> Install | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM installs WHERE hostname=? ORDER BY id DESC LIMIT 1",
                          (hostname,))
        return Install(**dict(rows[0])) if rows else None

    def update_install(self, install_id: int, *, phase: str | None = None, percent: float | None = None,
                       bytes_done: int | None = None, state: str | None = None,
                       log_append: str = "") -> None:
        finished = self.now() if state in ("succeeded", "failed") else None
        with self.tx() as db:
            db.execute(
                "UPDATE installs SET phase=coalesce(?, phase), percent=coalesce(?, percent), "
                "bytes=coalesce(?, bytes), state=coalesce(?, state), finished=coalesce(?, finished), "
                "log=substr(log || ?, -?) WHERE id=?",
                (phase, percent, bytes_done, state, finished, log_append, LOG_LIMIT, install_id))

    def installs(self, limit: int = 200) -> list[Install]:
        return [Install(**dict(r)) for r in self.query(
            f"SELECT {_COLUMNS} FROM installs ORDER BY id DESC LIMIT ?", (limit,))]
