"""The init's shell functions, run under busybox sh exactly as in the initrd."""
from __future__ import annotations

import json

import pytest

from support.bootimage_support import run_functions
from support.ports import free_port

HOSTS = """# SystemImager hosts file
10.0.0.21   www21.example.com   www21
10.0.0.22\twww22.example.com\twww22
10.0.0.2    www2.example.com    www2   # the manual's 12.2 case
10.0.0.20 www20.example.com www20\r
  10.0.0.3 www3.example.com
#10.0.0.4 commented.example.com commented
10.0.0.5 www5.example.com www5
10.0.0.5 duplicate.example.com duplicate
10.0.0.210 host-10.0.0.2.example.com odd
"""


@pytest.mark.parametrize("ip, expected", [
    ("10.0.0.2", "www2 www2.example.com"),       # not www21/www22/www20/odd
    ("10.0.0.21", "www21 www21.example.com"),
    ("10.0.0.22", "www22 www22.example.com"),
    ("10.0.0.20", "www20 www20.example.com"),    # CRLF line
    ("10.0.0.3", "www3 www3.example.com"),       # no short name column: first label
    ("10.0.0.4", ""),                           # commented out
    ("10.0.0.5", "www5 www5.example.com"),       # first entry wins
    ("10.0.0.210", "odd host-10.0.0.2.example.com"),
    ("10.0.0.1", ""),
    ("10.0.0", ""),
    ("10.0.0.2 ", ""),                          # no trimming games
    ("10.0.0.", ""),
    ("0.0.0.2", ""),
])
def test_hosts_lookup_is_exact(tmp_path, ip, expected):
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    proc = run_functions(f'si_hosts_lookup "{ip}" "{hosts}"', tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def _config(tmp_path, cmdline: str, files: dict[str, str], order: list[str]) -> dict[str, str]:
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    items = []
    for kind_name in order:
        kind, name = kind_name.split(":")
        (tmp_path / name).write_text(files[name])
        items.append(f"{kind}:{tmp_path / name}")
    proc = run_functions(f'si_collect_config "{tmp_path / "cmdline"}" {" ".join(items)} >/dev/null; env',
                         env={"HOSTNAME": "(none)"}, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_precedence_defaults_cmdline_disk_removable(tmp_path):
    env = _config(
        tmp_path,
        "BOOT_IMAGE=/kernel console=ttyS0 IMAGESERVER=10.0.0.1 HOSTNAME=fromcmdline GATEWAY=10.0.0.254 SI_SITE_OPTION=150",
        {"disk.cfg": "HOSTNAME=fromdisk\nIPADDR=10.0.0.9\nNETMASK=255.255.0.0\n",
         "usb.cfg": "# on the stick\nHOSTNAME=fromusb\n"},
        ["removable:usb.cfg", "hd:disk.cfg"],   # order found does not matter: removable wins
    )
    assert env["HOSTNAME"] == "fromusb"
    assert env["IPADDR"] == "10.0.0.9" and env["NETMASK"] == "255.255.0.0"     # disk over nothing
    assert env["IMAGESERVER"] == "10.0.0.1" and env["GATEWAY"] == "10.0.0.254"  # cmdline kept
    assert env["SI_SITE_OPTION"] == "150"                                        # cmdline over default
    assert env["SI_HTTP_PORT"] == "8080"                                         # default
    assert "BOOT_IMAGE" not in env and "console" not in env


def test_disk_cfg_overrides_cmdline(tmp_path):
    env = _config(tmp_path, "IMAGESERVER=10.0.0.1 SI_HTTP_PORT=9000",
                  {"disk.cfg": "IMAGESERVER=10.0.0.7\n"}, ["hd:disk.cfg"])
    assert env["IMAGESERVER"] == "10.0.0.7" and env["SI_HTTP_PORT"] == "9000"


def test_local_cfg_is_data_not_code(tmp_path):
    marker = tmp_path / "pwned"
    env = _config(tmp_path, "", {"x.cfg": (
        f'  export HOSTNAME="quoted name"  \n'
        f"DOMAINNAME='single.example'\n"
        f"IPADDR=$(touch {marker})\n"
        f"GATEWAY=`touch {marker}`\n"
        f"PATH=/evil\n"
        f"LD_PRELOAD=/evil.so\n"
        f"NOT A LINE\n"
        f"IMAGENAME=img; touch {marker}\n"
        f"DEVICE=eth1\r\n"
        f"NETMASK=255.255.255.0")},     # no final newline
        ["hd:x.cfg"])
    assert not marker.exists()
    assert env["HOSTNAME"] == "quoted name" and env["DOMAINNAME"] == "single.example"
    assert env["IPADDR"] == f"$(touch {marker})"   # kept literally, later rejected as not an IP
    assert env["IMAGENAME"] == f"img; touch {marker}"
    assert env["PATH"] != "/evil" and "LD_PRELOAD" not in env
    assert env["DEVICE"] == "eth1" and env["NETMASK"] == "255.255.255.0"


@pytest.mark.parametrize("env, expected", [
    ({"IMAGESERVER": "10.1.1.1", "DHCP_OPT100": "10.2.2.2", "DHCP_SITE": "10.3.3.3", "DHCP_SIADDR": "10.4.4.4"}, "10.1.1.1"),
    ({"DHCP_OPT100": "10.2.2.2", "DHCP_SITE": "10.3.3.3", "DHCP_SIADDR": "10.4.4.4"}, "10.2.2.2"),
    ({"DHCP_OPT100": "garbage", "DHCP_SITE": "10.3.3.3", "DHCP_SIADDR": "10.4.4.4"}, "10.3.3.3"),
    ({"DHCP_SIADDR": "10.4.4.4"}, "10.4.4.4"),
    ({"DHCP_SIADDR": "0.0.0.0"}, ""),
    ({}, ""),
])
def test_image_server_precedence(tmp_path, env, expected):
    proc = run_functions("si_image_server", env=env, tmp=tmp_path)
    assert proc.stdout.strip() == expected
    assert proc.returncode == (0 if expected else 1)


@pytest.mark.parametrize("hexval, ip", [("0a000001", "10.0.0.1"), ("C0A80A0B", "192.168.10.11"),
                                         ("0a0000", ""), ("zz000001", ""), ("", "")])
def test_hex_option_to_ip(tmp_path, hexval, ip):
    proc = run_functions(f'si_hex_ip "{hexval}"', tmp=tmp_path)
    assert proc.stdout.strip() == ip


@pytest.mark.parametrize("bootif, mac", [
    ("01-52-54-00-AA-bb-01", "52:54:00:aa:bb:01"),     # pxelinux IPAPPEND 2, iPXE ${netX/mac:hexhyp}
    ("01-52:54:00:aa:bb:02", "52:54:00:aa:bb:02"),     # GRUB ${net_default_mac}
    ("01-", None), ("01-52-54-00-aa-bb", None), ("01-52-54-00-aa-bb-zz", None), ("x; reboot", None),
])
def test_bootif_names_the_nic_that_booted(tmp_path, bootif, mac):
    net = tmp_path / "net"
    for dev, addr in (("eth0", "52:54:00:aa:bb:00"), ("eth1", "52:54:00:aa:bb:01"), ("eth2", "52:54:00:aa:bb:02")):
        (net / dev).mkdir(parents=True)
        (net / dev / "address").write_text(addr + "\n")
    proc = run_functions(f'm=$(si_bootif_mac "{bootif}") && echo "$m" && si_nic_by_mac "$m"',
                         env={"SI_SYS_NET": str(net)}, tmp=tmp_path)
    if mac is None:
        assert proc.returncode != 0 and proc.stdout == ""
    else:
        assert proc.stdout.split() == [mac, {"52:54:00:aa:bb:01": "eth1", "52:54:00:aa:bb:02": "eth2"}[mac]]


def test_json_escape_makes_valid_json(tmp_path):
    nasty = 'quote " back \\ tab\tcr\r bell\x07 unicode é\nsecond line\n'
    (tmp_path / "in").write_text(nasty)
    proc = run_functions(f'printf \'{{"log": "\'; si_json_escape < "{tmp_path / "in"}"; printf \'"}}\'',
                         tmp=tmp_path)
    assert json.loads(proc.stdout)["log"] == 'quote " back \\ tab cr bell unicode é\nsecond line\n'


@pytest.mark.parametrize("name, ok", [
    ("node2", True), ("www-3.example.com", True), ("A1", True),
    ("", False), ("../etc", False), ("a/b", False), ("-x", False), (".x", False), ("a..b", False),
    ("a b", False), ("a;reboot", False), ("x" * 254, False),
])
def test_hostname_validation(tmp_path, name, ok):
    assert run_functions(f"si_valid_hostname '{name}'", tmp=tmp_path).returncode == (0 if ok else 1)



def _httpd(tmp_path, port: int, events):
    """The test's HTTP server (it records each POST to events), once it listens."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "support" / "bootimage_httpd.py"),
                               "127.0.0.1", str(port), str(www), str(events)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return server


def test_the_final_report_waits_for_a_restarting_appliance(tmp_path):
    """Until the appliance hears of the success the host stays marked for install: keep telling it."""
    import threading
    import time
    port, events = free_port(), tmp_path / "events.jsonl"
    servers = []
    later = threading.Timer(2.5, lambda: servers.append(_httpd(tmp_path, port, events)))
    later.start()
    env = {"IMAGESERVER": "127.0.0.1", "SI_HTTP_PORT": str(port), "HOSTNAME": "node7",
           "SI_FINAL_WAIT": "1", "SI_FINAL_TRIES": "20"}
    try:
        proc = run_functions('si_post_final succeeded done 100 || exit 9', env=env, tmp=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        later.join()
        for server in servers:
            server.terminate()
            server.wait()
    posts = [json.loads(line)["body"] for line in events.read_text().splitlines()]
    assert [(p["state"], p["percent"]) for p in posts] == [("succeeded", 100)]
    assert "the appliance does not answer; reporting again in 1 s" in posts[0]["log"]
    started = time.monotonic()
    gone = run_functions('si_post_final failed x', env={**env, "SI_FINAL_TRIES": "2"}, tmp=tmp_path)
    assert gone.returncode == 1 and time.monotonic() - started < 10, "it gives up after its tries"


def test_progress_posts_json_with_only_new_log_text(tmp_path):
    """si_post against a real HTTP server on loopback, through busybox wget."""
    port, events = free_port(), tmp_path / "events.jsonl"
    server = _httpd(tmp_path, port, events)
    try:
        env = {"IMAGESERVER": "127.0.0.1", "SI_HTTP_PORT": str(port), "HOSTNAME": "node7"}
        proc = run_functions(
            'si_say "first \\"line\\""; si_post running partition 12 3456 || exit 9\n'
            'si_say second; si_post running rsync x y || exit 9\n'
            'si_post failed "the end" || exit 9\n'
            'SI_HTTP_PORT=1 si_post running nowhere && exit 8\n'
            'si_say after-a-lost-post; si_post running again 50 || exit 9\n',
            env=env, tmp=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        server.terminate()
        server.wait()
    posts = [json.loads(line) for line in events.read_text().splitlines()]
    assert all(p["path"] == "/api/installs/node7" and p["content_type"] == "application/json"
               and p["error"] is None for p in posts), posts
    bodies = [p["body"] for p in posts]
    assert [(b["state"], b["phase"], b["percent"], b["bytes"]) for b in bodies] == [
        ("running", "partition", 12, 3456), ("running", "rsync", None, None), ("failed", "the end", None, None),
        ("running", "again", 50, None)]   # an unknown number goes as null: the appliance keeps what it had
    assert bodies[0]["log"].endswith('SystemImager: first "line"\n') and bodies[0]["log"].count("\n") == 1
    assert bodies[1]["log"].endswith("SystemImager: second\n") and "first" not in bodies[1]["log"]
    assert bodies[2]["log"] == ""
    assert bodies[3]["log"].endswith("after-a-lost-post\n")   # nothing lost while the server was away


def test_a_long_failure_message_still_reaches_the_appliance(tmp_path):
    """A failure's phase is its message; an rsync error is longer than the appliance's phase limit,
    and a refused final report left the run 'running' for five minutes (found by the Debian e2e)."""
    from appliance import progress_report
    port, events = free_port(), tmp_path / "events.jsonl"
    server = _httpd(tmp_path, port, events)
    message = "rsync failed (exit 23): " + "rmdir(boot/efi) failed: Device or resource busy (16) " * 6
    try:
        env = {"IMAGESERVER": "127.0.0.1", "SI_HTTP_PORT": str(port), "HOSTNAME": "node7"}
        proc = run_functions(f'si_post failed "{message}\nsecond line é" || exit 9', env=env, tmp=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        server.terminate()
        server.wait()
    post = json.loads(events.read_text().splitlines()[0])
    assert post["error"] is None, post
    report = progress_report.parse(json.dumps(post["body"]).encode())      # the appliance's own parser: accepted, not a 400
    assert report.state == "failed" and len(report.phase) == progress_report.MAX_PHASE
    assert report.phase.startswith("rsync failed (exit 23): rmdir(boot/efi)")
