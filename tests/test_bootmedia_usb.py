"""si mkautoinstallusb --config-only: the USB counterpart of the manual's local.cfg diskette."""
from __future__ import annotations

import subprocess

from appliance.cli import main
from appliance.lab.configs import lab_toml

LOCAL_CFG = "HOSTNAME=www7\nDEVICE=eth0\nIPADDR=10.0.0.7\nNETMASK=255.255.255.0\nIMAGESERVER=10.0.0.1\n"


def test_a_local_cfg_stick_carries_the_file(tmp_path, capsys):
    cfg = tmp_path / "a.toml"
    cfg.write_text(lab_toml(tmp_path))
    local = tmp_path / "local.cfg"
    local.write_text(LOCAL_CFG)
    out = tmp_path / "stick.img"
    assert main(["mkautoinstallusb", "--config", str(cfg), "--config-only", "--local-cfg", str(local),
                 "-o", str(out)]) == 0
    assert "dd if=" in capsys.readouterr().out and out.stat().st_size == 1440 * 1024
    read = subprocess.run(["mtype", "-i", str(out), "::local.cfg"], capture_output=True, text=True, check=True)
    assert read.stdout == LOCAL_CFG
    # A file system the autoinstall's kernel mounts: fsck.fat finds nothing to fix.
    check = subprocess.run(["fsck.fat", "-n", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_config_only_needs_a_local_cfg(tmp_path, capsys):
    cfg = tmp_path / "a.toml"
    cfg.write_text(lab_toml(tmp_path))
    assert main(["mkautoinstallusb", "--config", str(cfg), "--config-only", "-o", str(tmp_path / "s")]) == 2
    assert main(["mkautoinstallusb", "--config", str(cfg), "--config-only", "--local-cfg",
                 str(tmp_path / "nosuch"), "-o", str(tmp_path / "s")]) == 1
    assert "not found" in capsys.readouterr().err and not (tmp_path / "s").exists()
