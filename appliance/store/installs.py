"""Install and update runs: one row per run, progress updated in place."""
from __future__ import annotations

from .records import Install

_FIELDS = ("id, hostname, image, kind, state, phase, percent, bytes, started, finished, updated, "
           "length(log) AS log_size")
_COLUMNS = f"{_FIELDS}, log"
LOG_LIMIT = 256 * 1024  # keep the tail of a run's log in the table; full logs go to log_dir
SUMMARY_TAIL = 1000     # what a row in a list needs of its log: the last line


def _columns(tail: int | None) -> str:
    """Every column; with tail, only the log's last `tail` characters (lists and streams
    read many runs often, and a log may be LOG_LIMIT long)."""
    return _COLUMNS if tail is None else f"{_FIELDS}, substr(log, -{int(tail)}) AS log"


class InstallsMixin:
    def start_install(self, hostname: str, image: str | None, kind: str = "install") -> int:
        with self.tx() as db:
            now = self.now()
            cur = db.execute("INSERT INTO installs (hostname, image, kind, started, updated) VALUES (?,?,?,?,?)",
                             (hostname, image, kind, now, now))
            return cur.lastrowid

    def current_install(self, hostname: str) -> Install | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM installs WHERE hostname=? ORDER BY id DESC LIMIT 1",
                          (hostname,))
        return Install(**dict(rows[0])) if rows else None

    def update_install(self, install_id: int, *, phase: str | None = None, percent: float | None = None,
                       bytes_done: int | None = None, state: str | None = None,
                       log_append: str = "") -> None:
        now = self.now()
        finished = now if state in ("succeeded", "failed") else None
        with self.tx() as db:
            db.execute(
                "UPDATE installs SET phase=coalesce(?, phase), percent=coalesce(?, percent), "
                "bytes=coalesce(?, bytes), state=coalesce(?, state), finished=coalesce(?, finished), "
                "log=substr(log || ?, -?), updated=? WHERE id=?",
                (phase, percent, bytes_done, state, finished, log_append, LOG_LIMIT, now, install_id))

    def fail_silent_installs(self, silent_for: float) -> list[Install]:
        """Mark failed every running run with no report for silent_for seconds (its machine went away)."""
        now = self.now()
        with self.tx() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM installs WHERE state='running' "
                              "AND coalesce(updated, started) < ?", (now - silent_for,)).fetchall()
            note = f"\n[appliance] no report for {silent_for:.0f} s: marked failed (the next boot retries)\n"
            for row in rows:
                db.execute("UPDATE installs SET state='failed', finished=?, log=substr(log || ?, -?) WHERE id=?",
                           (now, note, LOG_LIMIT, row["id"]))
        return [Install(**dict(r)) for r in rows]

    def latest_installs(self, hostname: str | None = None, *, tail: int | None = None) -> dict[str, Install]:
        """Each host's (or one host's) newest install run (kind 'install'; updates do not change
        what a host is)."""
        where, args = ("AND hostname=? ", (hostname,)) if hostname is not None else ("", ())
        return {r["hostname"]: Install(**dict(r)) for r in self.query(
            f"SELECT {_columns(tail)} FROM installs WHERE id IN "
            f"(SELECT max(id) FROM installs WHERE kind='install' {where}GROUP BY hostname)", args)}

    def installs(self, limit: int = 200, *, hostname: str | None = None,
                 tail: int | None = None) -> list[Install]:
        """The newest runs (of one host), newest first; tail: see _columns."""
        where, args = ("WHERE hostname=? ", (hostname,)) if hostname is not None else ("", ())
        return [Install(**dict(r)) for r in self.query(
            f"SELECT {_columns(tail)} FROM installs {where}ORDER BY id DESC LIMIT ?", (*args, limit))]
