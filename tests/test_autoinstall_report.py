"""The script's last word reaches the appliance: busybox wget (no curl in the initrd)
POSTs state succeeded to the real HTTP endpoint, which closes the install and flips
the host to local boot."""
from __future__ import annotations

import asyncio
import os
import shutil

from aiohttp import web

from appliance.autoinstall.plan import build_plan
from appliance.autoinstall.render import render_master
from appliance.config import parse
from appliance.http import build_app
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host

from support.autoinstall import need


def test_post_state_with_busybox_wget_closes_the_install(tmp_path):
    need("busybox")
    busybox = shutil.which("busybox")
    cfg = parse({"interface": "lo", "address": "127.0.0.1", "state_dir": str(tmp_path / "state"),
                 "log_dir": str(tmp_path / "log"), "services": {"dhcp": False}})
    store = Store(cfg.db_path)
    store.upsert_host(Host("node3", ip="127.0.0.1", image="web"))
    store.update_install(store.start_install("node3", "web"), phase="rsync", percent=50)
    (tmp_path / "etc").mkdir()
    script = tmp_path / "web.master"
    script.write_text(render_master(build_plan("web", tmp_path)))
    empty = tmp_path / "no-tools"
    empty.mkdir()

    async def scenario() -> tuple[int, bytes]:
        runner = web.AppRunner(build_app(Context(cfg, Store(cfg.db_path))))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            proc = await asyncio.create_subprocess_exec(
                busybox, "sh", "-c", f". {script}; realtool curl && exit 9; post_state succeeded",
                env={"PATH": str(empty), "SI_FUNCTIONS_ONLY": "1", "IMAGESERVER": "127.0.0.1",
                     "SI_HTTP_PORT": str(port), "HOSTNAME": "node3", "SI_TMP": str(tmp_path / "t")},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode, out
        finally:
            await runner.cleanup()

    rc, out = asyncio.run(scenario())
    assert rc == 0, out
    inst = store.current_install("node3")
    assert (inst.state, inst.percent, inst.phase) == ("succeeded", 100, "done") and inst.finished
    assert len(store.installs()) == 1
    assert store.host("node3").netboot == "local"
