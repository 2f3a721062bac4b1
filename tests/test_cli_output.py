"""Lists for eyes and for scripts: a table on a terminal, whole tab-separated values in a pipe,
records with --json, and an empty list that says so."""
from __future__ import annotations

import io
import json

from appliance.cli import main
from appliance.commands._output import emit
from appliance.lab.configs import lab_toml


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LONG_MAC = "52:54:00:aa:bb:cc"


def test_a_pipe_gets_every_value_whole_under_one_header():
    out = io.StringIO()
    emit(("host", "mac", "note"), [("node1", LONG_MAC, "a\tvalue\nwith breaks"), ("node2", None, "x" * 200)],
         stream=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "host\tmac\tnote"
    assert lines[1].split("\t") == ["node1", LONG_MAC, "a value with breaks"]
    assert lines[2].split("\t") == ["node2", "-", "x" * 200]          # nothing cut at 80 columns
    assert not any(c in out.getvalue() for c in "┏│└")                 # no box drawing


def test_a_terminal_gets_a_table_and_an_empty_list_a_sentence():
    out = Terminal()
    emit(("host",), [("node1",)], stream=out)
    assert "node1" in out.getvalue() and "┃" in out.getvalue()
    empty = Terminal()
    emit(("host",), [], stream=empty, empty="no hosts yet")
    assert empty.getvalue() == "no hosts yet\n"


def test_hosts_list_piped_and_as_json(tmp_path, capsys):
    cfg = tmp_path / "a.toml"
    cfg.write_text(lab_toml(tmp_path))
    assert main(["hosts", "set", "node1", "--config", str(cfg), "--mac", LONG_MAC, "--console", "ttyS0,115200n8"]) == 0
    capsys.readouterr()
    assert main(["hosts", "list", "--config", str(cfg)]) == 0            # capsys: not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:3] == ["hostname", "mac", "ip"]
    assert lines[1].split("\t")[:3] == ["node1", LONG_MAC, "-"]
    assert main(["hosts", "list", "--json", "--config", str(cfg)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records == [{"hostname": "node1", "mac": LONG_MAC, "ip": None, "image": None, "group": None,
                        "transport": None, "netboot": "install", "console": "ttyS0,115200n8"}]
    assert main(["images", "list", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == []
