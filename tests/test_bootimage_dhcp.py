"""The initrd's DHCP hook (udhcpc.script) against busybox udhcpd, both in lab namespaces.

Checks what the init learns from DHCP: address, gateway, next-server, host
name, and the image-server hint in option 100 or the site option.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from appliance.lab.netns import Lab
from bootimages.build import INITRD_FILES
from support.bootimage_support import FUNCTIONS, require_busybox, run_functions

APPLETS = ("sh", "ifconfig", "ip", "sed", "env", "cat", "tr", "grep", "printf", "mkdir", "echo")


@pytest.mark.parametrize("options, site_option, expected_server, expected_opt100", [
    # the contract: option 100 as 4 bytes and the site option (224) with the same address;
    # udhcpc knows 100 as a string option and cannot pass binary through, so the site option decides
    ({"0x64": "0a4d0009", "0xe0": "0a4d0009"}, 224, "10.77.0.9", ""),
    # original SystemImager servers sent option-100 as text
    ({"0x64": '"10.77.0.7"'}, 224, "10.77.0.7", "10.77.0.7"),
    # a site option moved with SI_SITE_OPTION=150
    ({"0x96": "0a4d0008"}, 150, "10.77.0.8", ""),
    # no hint at all: next-server
    ({}, 224, "10.77.0.5", ""),
])
def test_dhcp_hook_records_lease_and_image_server(tmp_path, options, site_option, expected_server,
                                                  expected_opt100):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")
    busybox = require_busybox()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in APPLETS:
        (bindir / applet).symlink_to(busybox)
    conf = tmp_path / "udhcpd.conf"
    conf.write_text("\n".join([
        "start 10.77.0.100", "end 10.77.0.110", "interface srv0", f"lease_file {tmp_path}/leases",
        f"pidfile {tmp_path}/udhcpd.pid", "siaddr 10.77.0.5", "option subnet 255.255.255.0",
        "option router 10.77.0.1", "option hostname node9", "option domain lab.test",
        *(f"option {code} {value}" for code, value in options.items())]) + "\n")
    (tmp_path / "leases").touch()
    si_dir = tmp_path / "si"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "SI_FUNCTIONS": str(FUNCTIONS), "SI_DIR": str(si_dir),
           "SI_SITE_OPTION": str(site_option), "SI_RESOLV_CONF": str(tmp_path / "resolv.conf")}
    host_resolv = open("/etc/resolv.conf", "rb").read()
    with Lab() as lab:
        server, client = lab.namespace("dhcps"), lab.namespace("dhcpc")
        lab.veth(server, "srv0", client, "cli0", addr_a="10.77.0.1/24")
        lab.popen(server, busybox, "udhcpd", "-f", str(conf), stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        # the hook's PATH goes to udhcpc only: `ip netns exec` itself must stay iproute2's ip
        proc = lab.run(client, "env", "-i", *(f"{k}={v}" for k, v in env.items()), busybox, "udhcpc", "-i", "cli0", "-f", "-q", "-n", "-t", "5", "-T", "1",
                       "-O", "100", "-O", str(site_option), "-s", str(INITRD_FILES / "udhcpc.script"),
                       check=False, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        addr = lab.run(client, "ip", "-4", "addr", "show", "cli0").stdout
        route = lab.run(client, "ip", "route", "show", "default").stdout
    assert open("/etc/resolv.conf", "rb").read() == host_resolv, "the hook touched the host's resolv.conf"
    assert (tmp_path / "resolv.conf").read_text() == "search lab.test\n"
    lease = dict(line.split("=", 1) for line in (si_dir / "dhcp.env").read_text().splitlines())
    lease = {k: v.strip("'") for k, v in lease.items()}
    assert lease["IPADDR"].startswith("10.77.0.1") and f"inet {lease['IPADDR']}/24" in addr
    assert lease["NETMASK"] == "255.255.255.0" and lease["GATEWAY"] == "10.77.0.1" and "via 10.77.0.1" in route
    assert lease["DHCP_SIADDR"] == "10.77.0.5" and lease["DHCP_SERVER"] == "10.77.0.1"
    assert lease["DHCP_HOSTNAME"] == "node9" and lease["DHCP_DOMAIN"] == "lab.test"
    assert lease["DHCP_OPT100"] == expected_opt100
    found = run_functions(f'. "{si_dir}/dhcp.env"; si_image_server', tmp=tmp_path)
    assert found.stdout.strip() == expected_server
