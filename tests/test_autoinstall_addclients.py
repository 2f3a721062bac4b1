"""si addclients: ranges, errors with nothing written, /etc/hosts rewriting, links."""
from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest

from appliance import cli, clients
from appliance.clients import OTHERS
from appliance.commands import addclients as addclients_cmd
from appliance.commands._dialogue import Dialogue
from appliance.config import load
from appliance.store import Store
from appliance.store.records import Host

CONFIG = """
interface = "lo"
address = "10.50.0.1"
domain = "cluster.local"
state_dir = "{state}"
log_dir = "{state}/log"
[[subnet]]
network = "10.50.0.0/24"
pools = ["10.50.0.200-10.50.0.250"]
[[subnet]]
network = "10.51.0.0/24"
"""


@pytest.fixture
def env(tmp_path):
    state = tmp_path / "state"
    conf = tmp_path / "appliance.toml"
    conf.write_text(CONFIG.format(state=state))
    cfg = load(conf)
    cfg.scripts_dir.mkdir(parents=True)
    (cfg.scripts_dir / "web.master").write_text("#!/bin/sh\necho web\n")
    etc_hosts = tmp_path / "hosts"
    etc_hosts.write_text("127.0.0.1\tlocalhost\n# the lab\n10.50.0.11\toldname.example oldname\n"
                         "10.9.9.9\tfar.example far www3\n")
    return SimpleNamespace(cfg=cfg, conf=conf, etc_hosts=etc_hosts, tmp=tmp_path)


def run_cli(env, *extra: str) -> int:
    return cli.main(["addclients", "--config", str(env.conf), "--etc-hosts", str(env.etc_hosts), *extra])


def snapshot(env) -> tuple:
    store = Store(env.cfg.db_path)
    try:
        hosts = [h.as_dict() for h in store.hosts()]
    finally:
        store.close()
    files = sorted((p.name, os.readlink(p) if p.is_symlink() else p.read_text())
                   for p in env.cfg.scripts_dir.iterdir())
    backups = sorted(p.name for p in env.tmp.iterdir() if p.name.endswith(".beforesystemimager"))
    return hosts, files, env.etc_hosts.read_text(), backups


ARGS = ["--domain", "lab.example", "--basename", "www", "--start", "1", "--end", "5", "--image", "web",
        "--ip-range", "10.50.0.10-10.50.0.12", "--ip-range", "10.51.0.20-10.51.0.30", "--yes"]


def test_ranges_fill_subnets_in_order_and_everything_is_written(env, capsys):
    assert run_cli(env, *ARGS) == 0
    store = Store(env.cfg.db_path)
    hosts = {h.hostname: h for h in store.hosts()}
    assert {n: (h.ip, h.image, h.netboot) for n, h in hosts.items()} == {
        "www1": ("10.50.0.10", "web", "install"), "www2": ("10.50.0.11", "web", "install"),
        "www3": ("10.50.0.12", "web", "install"), "www4": ("10.51.0.20", "web", "install"),
        "www5": ("10.51.0.21", "web", "install")}
    ours, marker, others = (env.cfg.scripts_dir / "hosts").read_text().partition(OTHERS)
    lines = [l.split() for l in ours.splitlines() if l and not l.startswith("#")]
    assert lines[0] == ["10.50.0.10", "www1.lab.example", "www1"]
    assert lines[-1] == ["10.51.0.21", "www5.lab.example", "www5"]
    # the rest of the server's /etc/hosts, as the manual's copy had it; nothing about our hosts
    assert marker and [l.split() for l in others.splitlines() if l] == [
        ["127.0.0.1", "localhost"], ["10.9.9.9", "far.example", "far"]]
    for n in range(1, 6):
        link = env.cfg.scripts_dir / f"www{n}.sh"
        assert link.is_symlink() and os.readlink(link) == "web.master"
        assert link.read_text() == "#!/bin/sh\necho web\n"
    assert "5 hosts -> web" in capsys.readouterr().out
    assert [e["kind"] for e in store.events()][-1] == "hosts"      # the newest, last


def test_etc_hosts_rewritten_in_place_never_duplicated_and_backed_up_once(env):
    original = env.etc_hosts.read_text()
    assert run_cli(env, *ARGS) == 0
    text = env.etc_hosts.read_text()
    lines = text.splitlines()
    # The line for 10.50.0.11 was rewritten where it stood, comments kept.
    assert lines[:3] == ["127.0.0.1\tlocalhost", "# the lab", "10.50.0.11\twww2.lab.example\twww2"]
    # www3 moved away from 10.9.9.9: only the name is dropped there.
    assert lines[3].split() == ["10.9.9.9", "far.example", "far"]
    assert [l.split()[0] for l in lines[4:]] == ["10.50.0.10", "10.50.0.12", "10.51.0.20", "10.51.0.21"]
    backup = env.etc_hosts.with_name("hosts.beforesystemimager")
    assert backup.read_text() == original
    # Run again: the same file, no duplicates.
    assert run_cli(env, *ARGS) == 0
    assert env.etc_hosts.read_text() == text
    names = [n for l in lines if not l.startswith("#") for n in l.split()[1:]]
    assert len(names) == len(set(names))
    assert backup.read_text() == original  # the backup is the first state, kept


def test_rewrite_etc_hosts_pure():
    text = "10.0.0.1 a.x a\n10.0.0.1 dup.x dup\n10.0.0.9 other b # keep me\n"
    out = clients.rewrite_etc_hosts(text, [clients.Client("b", "10.0.0.1", "b.x")])
    assert out.splitlines() == ["10.0.0.1\tb.x\tb", "10.0.0.9\tother\t# keep me"]


@pytest.mark.parametrize("change, message", [
    ({"--ip-range": ["10.50.0.10-10.50.0.20", "10.50.0.15-10.50.0.30"]}, "overlap"),
    ({"--ip-range": ["10.50.0.250-10.51.0.5"]}, "overflows subnet 10.50.0.0/24"),
    ({"--ip-range": ["10.50.0.10-10.50.0.12"]}, "5 hosts (www1..www5) but only 3 addresses"),
    ({"--ip-range": ["10.50.0.10-10.50.0.11", "10.50.0.20-10.50.0.30"]}, "one range per subnet"),
    ({"--ip-range": ["10.50.0.0-10.50.0.10"]}, "network or broadcast"),
    ({"--ip-range": ["10.60.0.1-10.60.0.10"]}, "none of the configured subnets"),
    ({"--ip-range": ["10.50.0.9-10.50.0.1"]}, "runs backwards"),
    ({"--ip-range": ["10.50.0.x-10.50.0.9"]}, "IPv4"),
    ({"--ip-range": ["10.50.0.1-10.50.0.9"]}, "install server's own address"),
    ({"--image": "nosuch"}, "no image 'nosuch'"),
    ({"--image": "../etc"}, "not a valid image name"),
    ({"--basename": "bad_name"}, "--basename"),
    ({"--basename": "web.1"}, "--basename"),
    ({"--domain": "bad..domain"}, "--domain"),
    ({"--start": "9"}, "9 is after 5"),
    ({"--basename": "a" * 63}, "longer than a host name"),
])
def test_bad_input_is_one_line_and_nothing_written(env, capsys, change, message):
    args = list(ARGS)
    for opt, value in change.items():
        if opt == "--ip-range":
            args = [a for i, a in enumerate(args) if a != "--ip-range" and (i == 0 or args[i - 1] != "--ip-range")]
            for v in value:
                args += ["--ip-range", v]
        else:
            args[args.index(opt) + 1] = value
    before = snapshot(env)
    assert run_cli(env, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert snapshot(env) == before


def test_address_of_another_host_is_refused(env, capsys):
    store = Store(env.cfg.db_path)
    store.upsert_host(Host("db1", mac="52:54:00:00:00:01", ip="10.50.0.12", image="web"))
    before = snapshot(env)
    assert run_cli(env, *ARGS) == 2
    assert "10.50.0.12 (for www3) already belongs to host db1" in capsys.readouterr().err
    assert snapshot(env) == before


def test_existing_host_keeps_mac_netboot_console_and_edited_copy(env):
    store = Store(env.cfg.db_path)
    store.upsert_host(Host("www2", mac="52:54:00:00:00:02", ip="10.50.0.99", image="old",
                           netboot="local", console="ttyS0,115200n8"))
    edited = env.cfg.scripts_dir / "www2.sh"
    edited.write_text("#!/bin/sh\n# edited for www2\n")
    (env.cfg.scripts_dir / "www3.sh").symlink_to("old.master")
    assert run_cli(env, *ARGS) == 0
    h = store.host("www2")
    assert (h.mac, h.ip, h.image, h.netboot, h.console) == \
        ("52:54:00:00:00:02", "10.50.0.11", "web", "local", "ttyS0,115200n8")
    assert not edited.is_symlink() and edited.read_text() == "#!/bin/sh\n# edited for www2\n"
    assert os.readlink(env.cfg.scripts_dir / "www3.sh") == "web.master"
    # getimage rewriting the master leaves the copy alone too.
    from appliance.autoinstall import write_master_script
    write_master_script(env.cfg, store, "web")
    assert edited.read_text() == "#!/bin/sh\n# edited for www2\n"
    assert run_cli(env, *ARGS) == 0
    assert edited.read_text() == "#!/bin/sh\n# edited for www2\n"


def test_image_in_store_without_master_gets_one(env):
    store = Store(env.cfg.db_path)
    store.add_image_version("fresh", 1, str(env.cfg.images_dir / "fresh"))
    store.finish_image_version("fresh", 1, 0)
    args = list(ARGS)
    args[args.index("--image") + 1] = "fresh"
    assert run_cli(env, *args) == 0
    master = env.cfg.scripts_dir / "fresh.master"
    assert master.is_file() and "no partition schemes" in master.read_text()
    assert os.readlink(env.cfg.scripts_dir / "www1.sh") == "fresh.master"


def _interactive_args(env):
    return SimpleNamespace(config=env.conf, domain=None, basename=None, start=None, end=None, image=None,
                           ip_range=None, etc_hosts=env.etc_hosts, no_etc_hosts=False, yes=False)


def test_interactive_three_sections(env):
    """The manual's Example 9, answered line by line (a first range refused, then given again)."""
    answers = "\n".join(["", "lab.example", "node", "7", "9", "y",          # Continue?, Section 1
                         "", "web",                                         # Section 2
                         "", "10.50.0.30", "10.50.0.31", "n",                # Section 3, not satisfied
                         "10.50.0.30", "10.50.0.31", "y", "10.51.0.40", "10.51.0.49", "y"]) + "\n"
    out = io.StringIO()
    assert addclients_cmd.addclients(_interactive_args(env), Dialogue(io.StringIO(answers), out)) == 0
    text = out.getvalue()
    for said in ("Continue? ([y]/n): ", "Section 1", "Are you satisfied? (y/[n]): y\n", "Section 2",
                 "Would you like me to create soft links", "Section 3",
                 "Would you like me to make these entries for you? ([y]/n): ", "node7 through node9",
                 "The first host in subnet 2 will be: node9", "Your soft links have been created.",
                 "These entries have been added to"):
        assert said in text, said
    assert "[n]) [n]" not in text and "[y]/n) [y]" not in text, "one default, written once"
    store = Store(env.cfg.db_path)
    assert [(h.hostname, h.ip) for h in store.hosts()] == [
        ("node7", "10.50.0.30"), ("node8", "10.50.0.31"), ("node9", "10.51.0.40")]


def test_sections_two_and_three_may_be_declined(env):
    answers = "\n".join(["y", "lab.example", "spare", "1", "2", "y", "n", "n"]) + "\n"
    before = env.etc_hosts.read_text()
    assert addclients_cmd.addclients(_interactive_args(env), Dialogue(io.StringIO(answers), io.StringIO())) == 0
    store = Store(env.cfg.db_path)
    assert [(h.hostname, h.ip, h.image) for h in store.hosts() if h.hostname.startswith("spare")] == [
        ("spare1", None, None), ("spare2", None, None)]
    assert not (env.cfg.scripts_dir / "spare1.sh").exists() and env.etc_hosts.read_text() == before


def test_interactive_without_answers_is_a_clear_error(env):
    before = snapshot(env)
    with pytest.raises(addclients_cmd.CliError, match="--basename"):
        addclients_cmd.addclients(_interactive_args(env), Dialogue(io.StringIO("y\nlab.example\n"), io.StringIO()))
    with pytest.raises(addclients_cmd.CliError, match="'maybe' is not an answer"):
        addclients_cmd.addclients(_interactive_args(env), Dialogue(io.StringIO("maybe\n"), io.StringIO()))
    assert snapshot(env) == before


def test_running_appliance_sees_new_clients_at_once(env):
    """The HTTP app of a running appliance (its own store connection) serves what addclients wrote."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from appliance.http import build_app
    from appliance.service import Context

    async def scenario():
        ctx = Context(env.cfg, Store(env.cfg.db_path))
        runner = web.AppRunner(build_app(ctx))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/api/hosts") as r:
                    assert await r.json() == []
                assert await asyncio.to_thread(run_cli, env, *ARGS) == 0
                async with http.get(f"{base}/api/hosts") as r:
                    assert [h["hostname"] for h in await r.json()] == [f"www{n}" for n in range(1, 6)]
                async with http.get(f"{base}/scripts/hosts") as r:
                    assert "10.50.0.12\twww3.lab.example\twww3" in await r.text()
                async with http.get(f"{base}/scripts/www3.sh") as r:
                    assert r.status == 200 and await r.text() == "#!/bin/sh\necho web\n"
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_other_entries_survive_a_host_removed_and_a_run_without_etc_hosts(env):
    """The copy keeps the server's other entries when the table changes without /etc/hosts
    in hand (si hosts delete, addclients --etc-hosts none), and drops a deleted host's line."""
    assert run_cli(env, *ARGS) == 0
    store = Store(env.cfg.db_path)
    clients.remove_host(env.cfg, store, "www5")
    text = (env.cfg.scripts_dir / "hosts").read_text()
    assert "www5" not in text and text.count(OTHERS) == 1
    assert text.split(OTHERS)[1].split() == ["127.0.0.1", "localhost", "10.9.9.9", "far.example", "far"]
