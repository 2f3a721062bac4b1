"""Progress reports are parsed and bounded before the store sees them (BAD-INPUTS: a 400, never a 500)."""
from __future__ import annotations

import json

import pytest

from appliance.progress_report import MAX_BYTES, BadReport, ProgressReport, parse


def test_a_report_is_parsed():
    got = parse(b'{"phase": "rsync", "percent": 55, "bytes": 1234, "log": "x\\n", "kind": "update"}')
    assert got == ProgressReport("rsync", 55.0, 1234, None, "x\n", "update")
    assert parse(b'{"kind": "something else"}').kind == "install"


@pytest.mark.parametrize("body, why", [
    (json.dumps({"bytes": MAX_BYTES + 1}).encode(), "bytes must be an integer"),     # was a 500 (OverflowError)
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),                         # was a 500 (RecursionError)
    (b'{"bytes": -1}', "bytes must be"),
    (b'{"bytes": true}', "bytes must be"),
    (b'{"bytes": 1.5}', "bytes must be"),
    (b'{"percent": NaN}', "percent must be"),
    (b'{"percent": true}', "percent must be"),
    (b'{"percent": 101}', "percent must be"),
    (json.dumps({"phase": "p" * 201}).encode(), "phase must be a string of at most 200"),
    (b'{"phase": 7}', "phase must be"),
    (b'{"state": "done"}', "state must be one of"),
    (b'{"log": ["a"]}', "log must be a string"),
    (b'"just a string"', "expected a JSON object"),
    (b"\xff\xfe", "not JSON"),
    (b"{" + b" " * (256 * 1024) + b"}", "larger than"),
])
def test_bad_reports_are_refused_with_the_reason(body, why):
    with pytest.raises(BadReport, match=why):
        parse(body)


def test_the_largest_byte_count_sqlite_holds_is_taken():
    assert parse(json.dumps({"bytes": MAX_BYTES}).encode()).bytes_done == MAX_BYTES


def _run(**kw):
    from appliance.store.records import Install
    base = dict(id=1, hostname="node1", image="web", kind="install", state="running", phase="mkfs",
                percent=40.0, bytes=0, started=1000.0, finished=None, log="")
    return Install(**{**base, **kw})


def test_milestones_a_run_starts_changes_phase_and_ends():
    from appliance.progress_report import milestone
    assert milestone(None, ProgressReport(phase="start"), "web", 1000.0) == ("start", "install of web started")
    done = _run(state="succeeded")
    assert milestone(done, ProgressReport(phase="partition"), "web", 2000.0)[0] == "start"   # a new run
    assert milestone(_run(), ProgressReport(phase="rsync", percent=50), "web", 1010.0) == ("phase", "install: rsync")
    assert milestone(_run(phase="rsync"), ProgressReport(phase="rsync", percent=60), "web", 1011.0) is None
    assert milestone(_run(phase="rsync"), ProgressReport(percent=61), "web", 1012.0) is None
    end = milestone(_run(phase="bootloader"), ProgressReport(state="succeeded", bytes_done=64 * 2**20),
                    "web", 1042.4)
    assert end == ("succeeded", "install of web succeeded after 42 s, 64.0 MiB")
