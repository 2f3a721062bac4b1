"""The monitor's terminal table (the web console's is tests/test_console_browser.py)."""
from __future__ import annotations

from rich.console import Console

from appliance.monitor import install_rows, render_table
from appliance.store import Store


def _store_with_runs(store: Store) -> None:
    done = store.start_install("www1", "web_v1")
    store.update_install(done, phase="rsync", percent=100, bytes_done=50 * 2**20,
                         state="succeeded", log_append="partitioned\nrsync done\n")
    failed = store.start_install("www2", "web_v1")
    store.update_install(failed, phase="partition", percent=3, state="failed",
                         log_append="sfdisk: /dev/vda: no such device\n")
    running = store.start_install("www3", "web_v1")
    store.update_install(running, phase="rsync", percent=42.5, bytes_done=10 * 2**20)


def test_terminal_view_shows_running_and_finished(tmp_path):
    store = Store(tmp_path / "s.db")
    _store_with_runs(store)
    console = Console(record=True, width=140)
    console.print(render_table(install_rows(store.installs())))
    text = console.export_text()
    lines = [l for l in text.splitlines() if "www" in l]
    assert "www3" in lines[0] and "running" in lines[0], "running runs come first"
    assert "42.5%" in text and "succeeded" in text and "failed" in text
    assert "sfdisk: /dev/vda: no such device" in text, "a failure shows its last log line"


def test_rows_compute_speed_and_elapsed(tmp_path):
    """A finished run's elapsed time ends when it finished; a running one's is now; speed is
    bytes over elapsed."""
    import dataclasses
    store = Store(tmp_path / "s.db")
    run = store.start_install("h", "img")
    store.update_install(run, bytes_done=1000, state="succeeded")
    rec = store.current_install("h")
    done = dataclasses.replace(rec, started=1000.0, finished=1100.0, bytes=5_000_000)
    running = dataclasses.replace(rec, started=1000.0, finished=None, bytes=1_000_000, state="running")
    rows = install_rows([done, running], now=1040.0)
    assert [(r["elapsed"], r["speed_bps"]) for r in rows] == [(100.0, 50_000), (40.0, 25_000)]
