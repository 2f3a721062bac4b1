"""The config-error table: every bad value gives one line naming the key, exit 2, nothing written."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance import config
from appliance.cli import main, normalise_single_dash

GOOD = {
    "interface": "br0", "address": "10.77.0.1", "domain": "lab.example",
    "state_dir": "/tmp/si-state", "log_dir": "/tmp/si-log",
    "subnet": [{"network": "10.77.0.0/24", "pools": ["10.77.0.100-10.77.0.199"],
                "gateway": "10.77.0.1", "dns_servers": ["10.77.0.1"], "lease_time": 600}],
}


def with_(path: str, value):
    """GOOD with one key (dotted, subnet.N.key) replaced or deleted (value=...)."""
    import copy
    data = copy.deepcopy(GOOD)
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is ...:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


def test_good_config_parses_to_frozen_dataclasses():
    cfg = config.parse(GOOD)
    assert str(cfg.address) == "10.77.0.1"
    assert cfg.subnets[0].pools[0].size == 100
    assert cfg.images_dir == Path("/tmp/si-state/images")
    assert cfg.hint_address == cfg.address
    with pytest.raises(Exception):
        cfg.address = None  # frozen


def test_example_config_is_valid():
    cfg = config.parse(tomllib.loads(config.EXAMPLE))
    assert cfg.enabled("dhcp") and cfg.dhcp.site_option == 224


def test_consoles_by_group_with_a_default():
    cfg = config.parse(with_("consoles", {"default": "ttyS0,115200n8", "rack7": "ttyS1,57600"}))
    assert cfg.console_for("rack7") == "ttyS1,57600"
    assert cfg.console_for("other") == cfg.console_for(None) == "ttyS0,115200n8"
    assert config.parse(with_("consoles", {"rack7": "hvc0"})).console_for(None) is None


def test_tftp_workers_default_to_one_per_core():
    assert config.parse(GOOD).tftp.workers is None
    assert config.parse(with_("tftp.workers", 0)).tftp.workers == 0


BAD = [
    ("unknown top-level key", with_("colour", "blue"), "colour: unknown key"),
    ("unknown nested key", with_("dhcp.colour", 1), "dhcp.colour: unknown key"),
    ("unknown subnet key", with_("subnet.0.colour", 1), "subnet[0].colour: unknown key"),
    ("missing interface", with_("interface", ...), "interface: missing"),
    ("missing address", with_("address", ...), "address: missing"),
    ("address not an IP", with_("address", "10.77.0.256"), "address:"),
    ("address wrong type", with_("address", 5), "address:"),
    ("lease time a string", with_("subnet.0.lease_time", "long"), "subnet[0].lease_time: expected an integer"),
    ("lease time a bool", with_("subnet.0.lease_time", True), "subnet[0].lease_time: expected an integer"),
    ("lease time negative", with_("subnet.0.lease_time", -5), "subnet[0].lease_time"),
    ("enrol not a bool", with_("dhcp.enrol", "yes"), "dhcp.enrol: expected true or false"),
    ("pool outside the subnet", with_("subnet.0.pools", ["10.78.0.1-10.78.0.9"]), "outside subnet"),
    ("pool backwards", with_("subnet.0.pools", ["10.77.0.9-10.77.0.1"]), "runs backwards"),
    ("overlapping pools", with_("subnet.0.pools", ["10.77.0.10-10.77.0.50", "10.77.0.40-10.77.0.60"]), "overlap"),
    ("pool holds the server", with_("subnet.0.pools", ["10.77.0.1-10.77.0.9"]), "address: the server's own"),
    ("pool is not a range", with_("subnet.0.pools", ["10.77.0.10"]), "subnet[0].pools[0]"),
    ("overlapping subnets", with_("subnet", GOOD["subnet"] + [{"network": "10.77.0.128/25"}]), "overlap"),
    ("network with host bits", with_("subnet.0.network", "10.77.0.1/24"), "subnet[0].network"),
    ("gateway outside", with_("subnet.0.gateway", "192.0.2.1"), "subnet[0].gateway"),
    ("address in no subnet", with_("address", "10.99.0.1"), "address: 10.99.0.1 is in none"),
    ("bad interface name", with_("interface", "eth0; rm -rf /"), "interface:"),
    ("interface name too long", with_("interface", "x" * 16), "interface:"),
    ("bad domain", with_("domain", "bad_domain!"), "domain:"),
    ("relative state dir", with_("state_dir", "var/lib"), "state_dir: 'var/lib' must be an absolute path"),
    ("port out of range", with_("http.port", 70000), "http.port: port 70000"),
    ("port clash", with_("http.port", 873), "rsyncd.port: port 873 is already used by http.port"),
    ("site option out of range", with_("dhcp.site_option", 100), "dhcp.site_option"),
    ("unknown dhcp mode", with_("dhcp.mode", "relay"), "dhcp.mode"),
    ("unknown loader", with_("dhcp.loader", "lilo"), "dhcp.loader"),
    ("unknown service", with_("services.ftp", True), "services.ftp: unknown key"),
    ("dhcp without subnet", with_("subnet", ...), "subnet: DHCP is enabled"),
    ("console not a console", with_("consoles", {"default": "ttyS0; reboot"}), "consoles.default: 'ttyS0; reboot'"),
    ("console not a string", with_("consoles", {"rack7": 115200}), "consoles.rack7:"),
    ("console group name", with_("consoles", {"rack 7": "ttyS0"}), "consoles.rack 7: 'rack 7' is not a group"),
    ("consoles not a table", with_("consoles", "ttyS0"), "consoles: expected a table"),
    ("tftp workers negative", with_("tftp.workers", -1), "tftp.workers: -1 is outside 0-64"),
    ("tftp workers a string", with_("tftp.workers", "auto"), "tftp.workers: expected an integer"),
]


@pytest.mark.parametrize("case,data,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_the_key(case, data, message):
    with pytest.raises(config.ConfigError) as err:
        config.parse(data)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _write_toml(path: Path, data: dict) -> None:
    # Just enough TOML for these tests (no third-party writer).
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace('"', '\\"') + '"'
    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((f"[{k}]", v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            tables.extend((f"[[{k}]]", item) for item in v)
        else:
            lines.append(f"{k} = {value(v)}")
    for header, table in tables:
        lines.append(header)
        lines.extend(f"{k} = {value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")


def test_cli_exit_2_one_line_nothing_written(tmp_path, capsys):
    state = tmp_path / "state"
    data = with_("subnet.0.pools", ["10.78.0.1-10.78.0.9"])
    data["state_dir"] = str(state)
    cfg_file = tmp_path / "a.toml"
    _write_toml(cfg_file, data)
    assert main(["config", "check", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "subnet[0].pools[0]" in err
    assert main(["up", "--config", str(cfg_file)]) == 2
    assert not state.exists(), "a refused config must not create state"


def test_cli_reports_missing_and_broken_files(tmp_path, capsys):
    assert main(["config", "check", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("interface = \n")
    assert main(["config", "check", "--config", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_single_dash_long_options_are_accepted():
    assert normalise_single_dash(["getimage", "-golden-client", "x", "-im", "y", "-h"]) == \
        ["getimage", "--golden-client", "x", "--im", "y", "-h"]
    assert normalise_single_dash(["a", "--", "-x"]) == ["a", "--", "-x"]
    assert normalise_single_dash(["a", "-5"]) == ["a", "-5"]


def test_a_command_to_run_and_known_short_options_stay_as_typed():
    for argv in (["images", "chroot", "web", "ls", "-la"],
                 ["images", "chroot", "web", "/bin/sh", "-c", "echo -n hi"],
                 ["-v", "hosts", "list"]):
        assert normalise_single_dash(argv) == argv
    assert normalise_single_dash(["images", "chroot", "-config", "a.toml", "web", "ls", "-la"]) == \
        ["images", "chroot", "--config", "a.toml", "web", "ls", "-la"]
    assert normalise_single_dash(["getimage", "-golden-client", "-x", "-im", "y"]) == \
        ["getimage", "--golden-client", "-x", "--im", "y"]          # an option's value is left alone


def test_errors_name_options_as_typed(capsys):
    with pytest.raises(SystemExit) as done:
        main(["getimage", "-g", "gc", "-i", "web"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "-i could match" in err and "--i " not in err, err


def test_abbreviated_single_dash_option_reaches_the_command(tmp_path):
    cfg_file = tmp_path / "a.toml"
    _write_toml(cfg_file, GOOD)
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "config", "check", "-con", str(cfg_file),
                          "-file-only"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_check_refuses_an_interface_this_machine_does_not_have(tmp_path, capsys):
    cfg_file = tmp_path / "a.toml"
    _write_toml(cfg_file, {**GOOD, "interface": "si-nosuch0"})
    assert main(["config", "check", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "interface: si-nosuch0 does not exist here" in err and "\n" not in err
    assert main(["config", "check", "--config", str(cfg_file), "--file-only"]) == 0


def test_check_says_what_si_up_would_refuse_on_this_machine(tmp_path, capsys):
    cfg_file = tmp_path / "a.toml"
    _write_toml(cfg_file, {**GOOD, "interface": "lo"})       # lo holds no 10.77.0.0/24 address
    assert main(["config", "check", "--config", str(cfg_file)]) == 0
    assert "si up refuses this without --force: interface: lo has 127.0.0.1/8, none in the configured subnets" \
        in capsys.readouterr().out


def test_si_version_names_the_installed_version(capsys):
    import importlib.metadata
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"si {importlib.metadata.version('systemimager-appliance')}"


def test_config_may_come_before_the_command(tmp_path, capsys):
    cfg_file = tmp_path / "a.toml"
    _write_toml(cfg_file, GOOD)
    assert main(["--config", str(cfg_file), "config", "check", "--file-only"]) == 0
    assert f"{cfg_file}: OK" in capsys.readouterr().out
    other = tmp_path / "missing.toml"
    assert main(["--config", str(other), "config", "check", "--config", str(cfg_file), "--file-only"]) == 0, \
        "the command's own --config wins"
    assert main(["-config", str(other), "config", "check", "--file-only"]) == 2     # the manual's spelling
    assert "does not exist" in capsys.readouterr().err


def test_dash_v_is_still_verbose_beside_version():
    """The manual's single-dash "-v" becomes "--v", which also prefixes --version: it must mean verbose."""
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "-v", "config", "example"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "interface =" in out.stdout, out.stderr
