"""si mkdhcpstatic and si mkdhcpserver, the exports checked by the real daemons."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from appliance.cli import main
from appliance.lab.netns import Lab
from appliance.store import Store
from appliance.store.records import Host, Lease
from support.dhcp_lab import lab_config

@pytest.fixture
def site(tmp_path):
    def make(loader="ipxe"):
        cfg = tmp_path / "appliance.toml"
        cfg.write_text(lab_config(tmp_path / "state", interface="eth1",
                                  dhcp={"loader": loader, "site_option": 231}))
        store = Store(tmp_path / "state" / "appliance.db")
        return cfg, store
    return make


def test_mkdhcpstatic(site, capsys):
    cfg, store = site()
    later = time.time() + 600
    store.upsert_host(Host("node1", ip="10.77.0.101", image="img"))          # matched by IP
    store.upsert_host(Host("node2", image="img"))                            # matched by name
    store.upsert_host(Host("node3", mac="52:54:00:00:00:03", ip="10.77.0.103"))  # already right
    store.upsert_host(Host("node4", mac="52:54:00:00:00:05", ip="10.77.0.104"))  # MAC taken below
    store.save_leases([Lease("52:54:00:00:00:01", "10.77.0.101", None, later),
                       Lease("52:54:00:00:00:02", "10.77.0.150", "node2", later),
                       Lease("52:54:00:00:00:03", "10.77.0.103", "node3", later),
                       Lease("52:54:00:00:00:09", "10.77.0.160", "stranger", later),
                       Lease("52:54:00:00:00:05", "10.77.0.170", None, later, "released")])
    assert main(["mkdhcpstatic", "--config", str(cfg), "--dry-run"]) == 0
    assert store.host("node1").mac is None
    capsys.readouterr()
    assert main(["mkdhcpstatic", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "node1: mac - -> 52:54:00:00:00:01" in out
    assert "node2: mac - -> 52:54:00:00:00:02, ip 10.77.0.150" in out
    assert "node3" not in out and "stranger" not in out
    assert store.host("node1").mac == "52:54:00:00:00:01"
    assert (store.host("node2").mac, store.host("node2").ip) == ("52:54:00:00:00:02", "10.77.0.150")
    assert store.host_by_mac("52:54:00:00:00:09") is None
    assert main(["mkdhcpstatic", "--config", str(cfg)]) == 0
    assert "no changes" in capsys.readouterr().out


def _hosts(store):
    store.upsert_host(Host("node07", mac="52:54:00:00:00:07", ip="10.77.0.7"))
    store.upsert_host(Host("node08", mac="52:54:00:00:00:08"))
    store.upsert_host(Host("far05", mac="52:54:00:00:88:05", ip="10.88.0.5"))
    store.upsert_host(Host("nomac", ip="10.77.0.9"))


@pytest.mark.parametrize("loader", ["ipxe", "pxelinux"])
def test_mkdhcpserver_isc_passes_dhcpd_t(site, tmp_path, loader):
    if not shutil.which("dhcpd"):
        pytest.fail("dhcpd (package isc-dhcp-server) is needed to check the export")
    cfg, store = site(loader)
    _hosts(store)
    out = tmp_path / "dhcpd.conf"
    assert main(["mkdhcpserver", "--yes", "--config", str(cfg), "--format", "isc", "--output", str(out)]) == 0
    text = out.read_text()
    check = subprocess.run(["dhcpd", "-t", "-cf", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # the manual's mkdhcpstatic named the host, so that editing /etc/hosts moves it
    assert "fixed-address node07;" in text and "hardware ethernet 52:54:00:00:00:08;" in text
    assert main(["mkdhcpserver", "--yes", "--config", str(cfg), "--format", "isc", "--output", str(out), "--by-address"]) == 0
    assert "fixed-address 10.77.0.7;" in out.read_text()
    check = subprocess.run(["dhcpd", "-t", "-cf", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "range 10.88.0.50 10.88.0.99;" in text and "si-site-hint code 231" in text
    assert "nomac" not in text
    if loader == "ipxe":
        assert 'filename "http://10.77.0.1:8080/boot/ipxe/01-${netX/mac:hexhyp}.ipxe";' in text
        assert 'filename "undionly.kpxe";' in text and 'filename "shimx64.efi";' in text   # UEFI: signed shim
    else:
        assert 'filename "pxelinux.0";' in text and 'filename "efi64/syslinux.efi";' in text


def test_mkdhcpserver_dnsmasq_passes_test(site, tmp_path):
    cfg, store = site()
    _hosts(store)
    out = tmp_path / "dnsmasq.conf"
    assert main(["mkdhcpserver", "--yes", "--config", str(cfg), "--format", "dnsmasq", "--output", str(out)]) == 0
    check = subprocess.run(["dnsmasq", "--test", "-C", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = out.read_text()
    assert "dhcp-host=52:54:00:00:00:07,node07\n" in text     # dnsmasq takes node07's address from /etc/hosts
    assert "dhcp-host=52:54:00:00:00:08,node08" in text
    assert main(["mkdhcpserver", "--yes", "--config", str(cfg), "--format", "dnsmasq", "--output", str(out),
                 "--by-address"]) == 0
    assert "dhcp-host=52:54:00:00:00:07,10.77.0.7,node07" in out.read_text()
    assert "dhcp-option-force=100,10.77.0.1" in text and "dhcp-option-force=231,10.77.0.1" in text


def test_mkdhcpserver_kea_passes_kea_t(site, tmp_path):
    if not shutil.which("kea-dhcp4"):
        pytest.fail("kea-dhcp4 (package kea-dhcp4-server) is needed to check the export")
    cfg, store = site()
    _hosts(store)
    out = tmp_path / "kea.json"
    assert main(["mkdhcpserver", "--yes", "--config", str(cfg), "--format", "kea", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())["Dhcp4"]
    first, second = doc["subnet4"]
    assert {r["hostname"] for r in first["reservations"]} == {"node07", "node08"}
    assert second["reservations"] == [{"hw-address": "52:54:00:00:88:05", "hostname": "far05",
                                       "ip-address": "10.88.0.5"}]
    assert first["pools"] == [{"pool": "10.77.0.100 - 10.77.0.250"}]
    # kea-dhcp4 -t insists the interface exists: check inside a namespace that has one.
    with Lab() as lab:
        ns = lab.namespace("kea")
        lab.run(ns, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
        check = lab.run(ns, "kea-dhcp4", "-t", str(out), check=False)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_mkdhcpserver_unwritable_output(site, tmp_path, capsys):
    cfg, _ = site()
    code = main(["mkdhcpserver", "--yes", "--config", str(cfg), "--output", str(tmp_path / "no" / "such" / "f")])
    assert code == 1                      # the write failed
    err = capsys.readouterr().err.strip()
    assert err.startswith("si mkdhcpserver: --output") and "\n" not in err


def test_mkdhcpserver_asks_the_manuals_questions(site, tmp_path, monkeypatch):
    """Example 11 with piped answers: Continue?, the ten questions (and the swallow), the values
    shown back, a "no" to "Are you satisfied?" that asks again, the old file kept as
    .beforesystemimager, and a config dhcpd accepts."""
    import io
    from types import SimpleNamespace

    from appliance.commands import mkdhcpserver as command
    from appliance.commands._dialogue import Dialogue
    cfg, store = site()
    out = tmp_path / "dhcpd.conf"
    out.write_text("# the site's own config\n")
    monkeypatch.setattr(command, "physical_interfaces", lambda: ["eno1", "eno2"])
    first = ["mydomain.com", "", "", "10.77.0.120", "10.77.0.130", "10.77.0.200", "10.77.0.201", "", "",
             "10.77.0.203", "african or european?"]
    answers = ["y", *first, "n", "", "", "", "", "10.77.0.140", "", "", "", "", "", "", "y"]
    said = io.StringIO()
    args = SimpleNamespace(config=cfg, format="isc", output=out, by_address=False, yes=False, domain=None,
                           network=None, netmask=None, pool=None, dns=None, gateway=None, image_server=None)
    assert command.mkdhcpserver(args, Dialogue(io.StringIO("\n".join(answers) + "\n"), said)) == 0
    text, transcript = out.read_text(), said.getvalue()
    assert (tmp_path / "dhcpd.conf.beforesystemimager").read_text() == "# the site's own config\n"
    assert transcript.count("Here are the values you have chosen:") == 2
    assert "What is your netmask? [255.255.255.0]: " in transcript
    assert "What is the ending IP address for your dhcp range? [10.77.0.130]: 10.77.0.140" in transcript
    assert "Ahh, but seriously folks..." in transcript and "WARNING!: This machine has several" in transcript
    assert 'domain-name "mydomain.com"' in text and "range 10.77.0.120 10.77.0.140;" in text
    assert "10.77.0.200, 10.77.0.201" in text and "10.77.0.203" in text
    if not shutil.which("dhcpd"):
        pytest.fail("dhcpd (package isc-dhcp-server) is needed to check the export")
    check = subprocess.run(["dhcpd", "-t", "-cf", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # A wrong answer from a pipe stops it, and nothing is written.
    out.write_text("# again\n")
    bad = ["y", "mydomain.com", "10.77.0.0", "255.255.255.0", "not-an-address"]
    with pytest.raises(command.CliError, match="--range: 'not-an-address' is not an IPv4 address"):
        command.mkdhcpserver(args, Dialogue(io.StringIO("\n".join(bad) + "\n"), io.StringIO()))
    assert out.read_text() == "# again\n"
