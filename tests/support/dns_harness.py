"""Runs a DnsService (or any Service) in a background asyncio thread for socket tests."""
from __future__ import annotations

import asyncio
import threading
from ipaddress import IPv4Address, IPv4Network

from appliance.config import Config, DnsConfig, SubnetConfig
from appliance.service import Context
from appliance.store import Store

from .ports import free_udp_and_tcp_port as free_port


def make_ctx(tmp_path, port: int, domain: str = "cluster.test", upstream=()) -> Context:
    cfg = Config(interface="lo", address=IPv4Address("127.0.0.1"), domain=domain,
                 state_dir=tmp_path, log_dir=tmp_path / "log",
                 subnets=(SubnetConfig(IPv4Network("10.77.0.0/24")),),
                 dns=DnsConfig(port=port, upstream=tuple(IPv4Address(u) for u in upstream)))
    return Context(cfg, Store(tmp_path / "appliance.db"))


class ServiceThread:
    """serve() in its own loop; stop() cancels it and joins."""

    def __init__(self, service) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.service.serve(self.ready.set))
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    def start(self) -> "ServiceThread":
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            raise RuntimeError(f"service did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)
