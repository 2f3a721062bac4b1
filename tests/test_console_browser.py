"""The web console in headless Chromium (WebDriver), against the real HTTP service and store:
rows change in place from the event stream, a log tail stays open and grows, and actions are
refused without the operator token and done with it."""
from __future__ import annotations

import shutil
from ipaddress import IPv4Address

import pytest

from appliance.config import Config
from appliance.console import token
from appliance.service import Context
from appliance.store import Store
from appliance.store.records import Host
from support.console_browser import browser, click, flash, host_state, wait_until
from support.http_app import Server


@pytest.fixture
def server(tmp_path):
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path / "state",
                 log_dir=tmp_path / "log")
    ctx = Context(cfg, Store(cfg.db_path))
    ctx.store.add_image_version("web", 1, "/x")
    ctx.store.finish_image_version("web", 1, 3 * 2**20)
    ctx.store.upsert_host(Host("node1", mac="52:54:00:00:00:01", ip="10.0.0.11", image="web"))
    srv = Server(ctx)
    yield srv
    srv.close()


@pytest.mark.timeout(300)
def test_console_follows_an_install_and_guards_its_actions(server, request):
    store = server.ctx.store
    with browser(request.node.name) as d:
        d.get(server.url("/"))
        wait_until(d, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"), "the page loaded")
        assert host_state(d, "node1") == "assigned"
        assert "web" in d.find_element("css selector", '#image-rows tr[data-image="web"]').text

        run = store.start_install("node1", "web")
        store.update_install(run, phase="partition", percent=5, log_append="partitioning /dev/vda\n")
        wait_until(d, lambda d: host_state(d, "node1") == "installing", "node1 installing")
        wait_until(d, lambda d: d.find_elements("css selector", f'#runs tr.run[data-run="{run}"]'), "its run row")
        click(d, f'#runs tr.run[data-run="{run}"] button[data-action="log"]')
        tail = lambda d: d.find_element("css selector", '#runs tr.tail[data-host="node1"] pre').text
        wait_until(d, lambda d: "partitioning /dev/vda" in tail(d), "the log tail")
        store.update_install(run, phase="rsync", percent=60, log_append="rsync from 10.0.0.1\n")
        wait_until(d, lambda d: "rsync from 10.0.0.1" in tail(d), "the tail grew")
        wait_until(d, lambda d: "60.0%" in d.find_element("css selector", f'#runs tr.run[data-run="{run}"]').text,
                   "the row's progress moved")
        assert "partitioning /dev/vda" in tail(d), "the tail stayed open through the row's updates"

        store.update_install(run, percent=100, state="succeeded", log_append="done\n")
        store.set_netboot("node1", "local")
        wait_until(d, lambda d: host_state(d, "node1") == "installed", "node1 installed")

        click(d, '#host-rows tr[data-host="node1"] button[data-action="reinstall"]')
        wait_until(d, lambda d: "refused" in flash(d), "a refusal without the token")
        assert "si console token" in flash(d)
        assert store.host("node1").netboot == "local", "refused means nothing changed"

        d.find_element("id", "token").send_keys(token.ensure(server.ctx.config.state_dir))
        click(d, '#token-form button[type="submit"]')
        click(d, '#host-rows tr[data-host="node1"] button[data-action="reinstall"]')
        wait_until(d, lambda d: "next PXE boot autoinstalls" in flash(d), "the reinstall done")
        assert store.host("node1").netboot == "install"
        wait_until(d, lambda d: host_state(d, "node1") == "assigned", "node1 assigned again")

        store.add_image_version("db", 1, "/y")
        store.finish_image_version("db", 1, 1)
        store.event("images", "getimage", "db:1")
        chooser = '#host-rows tr[data-host="node1"] select[data-role="image-choice"] option[value="db"]'
        wait_until(d, lambda d: d.find_elements("css selector", chooser), "the new image offered")
        click(d, chooser)
        click(d, '#host-rows tr[data-host="node1"] button[data-action="image"]')
        wait_until(d, lambda d: "image db" in flash(d), "the image assigned")
        assert store.host("node1").image == "db"


@pytest.mark.timeout(120)
def test_a_failing_browser_step_keeps_a_screenshot(server):
    from support.console_browser import ARTIFACTS
    name = "test_console_browser_screenshot_probe"
    keep = ARTIFACTS / name
    shutil.rmtree(keep, ignore_errors=True)
    try:
        with pytest.raises(AssertionError, match="never there"):
            with browser(name) as d:
                d.get(server.url("/"))
                wait_until(d, lambda d: False, "never there", seconds=1)
        assert (keep / "console.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "SystemImager" in (keep / "console.html").read_text()
    finally:
        shutil.rmtree(keep, ignore_errors=True)
