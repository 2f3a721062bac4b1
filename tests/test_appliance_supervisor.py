"""Supervisor: crashed services restart with back-off, the others keep serving."""
from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address

import pytest

from appliance import supervisor as sup
from appliance.config import Config
from appliance.http import HttpService
from appliance.service import Context, Endpoint, Service
from appliance.store import Store


class Crasher(Service):
    name = "crasher"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.starts = 0
        self.started_at: list[float] = []

    async def serve(self, ready):
        self.starts += 1
        self.started_at.append(time.monotonic())
        ready()
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")


class Echo(Service):
    """A real UDP echo server: proves the loop keeps serving while another crashes."""
    name = "echo"

    async def serve(self, ready):
        loop = asyncio.get_running_loop()

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(data, addr)

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        try:
            ready()
            await asyncio.Event().wait()
        finally:
            transport.close()

    def endpoints(self):
        return [Endpoint("udp", "127.0.0.1", getattr(self, "port", 0), "echo")]


async def _udp_ask(port: int, payload: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            fut.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    transport.sendto(payload)
    try:
        return await asyncio.wait_for(fut, 2)
    finally:
        transport.close()


def _ctx(tmp_path) -> Context:
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), state_dir=tmp_path)
    return Context(cfg, Store(tmp_path / "s.db"))


def test_crashing_service_restarts_and_others_keep_serving(tmp_path, monkeypatch):
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.02)
    ctx = _ctx(tmp_path)
    crasher, echo = Crasher(ctx), Echo(ctx)

    async def scenario():
        s = sup.Supervisor(ctx, [crasher, echo])
        await s.start_all(timeout=5)
        await asyncio.sleep(0.5)
        answers = [await _udp_ask(echo.port, b"ping%d" % i) for i in range(3)]
        status = s.status()
        await s.stop_all()
        return answers, status

    answers, status = asyncio.run(scenario())
    assert answers == [b"ping0", b"ping1", b"ping2"]
    assert crasher.starts >= 3, "the crashed service was not restarted"
    by_name = {x["name"]: x for x in status["services"]}
    assert by_name["crasher"]["restarts"] >= 2 and "boom" in by_name["crasher"]["detail"]
    assert by_name["echo"]["ok"] and by_name["echo"]["restarts"] == 0
    kinds = [e["kind"] for e in ctx.store.events() if e["source"] == "crasher"]
    assert kinds and set(kinds) == {"crash"}


def test_backoff_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.05)
    ctx = _ctx(tmp_path)
    crasher = Crasher(ctx)

    async def scenario():
        s = sup.Supervisor(ctx, [crasher])
        s.start("crasher")
        for _ in range(300):                    # until the fourth start (a busy machine only delays it)
            if crasher.starts >= 4:
                break
            await asyncio.sleep(0.02)
        await s.stop_all()

    asyncio.run(scenario())
    assert crasher.starts >= 4, f"only {crasher.starts} starts in 6 s"
    # Lower bounds only, which a slow machine cannot break: each wait is at least twice the last
    # (0.05, 0.1, 0.2 s after a 0.01 s run); without back-off they would all be about 0.01 s.
    gaps = [b - a for a, b in zip(crasher.started_at, crasher.started_at[1:])]
    for i, gap in enumerate(gaps[:3]):
        assert gap >= 0.05 * 2 ** i, gaps


def test_build_services_honours_the_enabled_set(tmp_path):
    ctx = _ctx(tmp_path)
    names = [s.name for s in sup.build_services(ctx, {"http": HttpService})]
    assert names == ["http"]
    ctx.config = ctx.config.with_overrides(services=frozenset())
    assert sup.build_services(ctx, {"http": HttpService}) == []


def test_status_rows_show_a_running_services_detail_after_what_it_serves():
    status = {"services": [
        {"name": "tftp", "ok": True, "up": True, "endpoints": ["udp 10.0.0.1:69"], "serves": "pxelinux",
         "detail": "lock-step loop in Python: _lockstep.so is not built"},
        {"name": "dns", "ok": False, "up": False, "endpoints": [], "serves": "", "detail": "bind failed"},
    ]}
    assert sup.status_rows(status) == [
        ("tftp", "up", "udp 10.0.0.1:69", "pxelinux; lock-step loop in Python: _lockstep.so is not built"),
        ("dns", "down", "-", "bind failed"),
    ]


def test_install_blockers_name_what_to_run(tmp_path):
    from appliance.config import parse
    from appliance.supervisor import install_blockers
    cfg = parse({"interface": "br0", "address": "10.77.0.1", "state_dir": str(tmp_path),
                 "subnet": [{"network": "10.77.0.0/24"}]})
    blockers = install_blockers(cfg)
    assert len(blockers) == 2 and "si mkbootimage" in blockers[0] and "shimx64.efi" in blockers[1]
    for name in ("systemimager/kernel", "systemimager/initrd.img", "undionly.kpxe", "shimx64.efi",
                 "grubx64.efi", "ipxe.efi"):
        (cfg.boot_root / name).parent.mkdir(parents=True, exist_ok=True)
        (cfg.boot_root / name).write_bytes(b"x")
    assert install_blockers(cfg) == []
