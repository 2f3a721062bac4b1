"""The appliance HTTP (build_app) with the boot config provider, for lab namespaces.

Run inside a namespace by the QEMU test:
    python bootcfg_http_server.py STATE_DIR ADDRESS PORT ACCESS_LOG
The store (STATE_DIR/appliance.db) and boot root (STATE_DIR/tftpboot) are
prepared by the test. Every request is appended to ACCESS_LOG as
"METHOD PATH STATUS".
"""
from __future__ import annotations

import asyncio
import sys
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from aiohttp import web

from appliance import bootconfig
from appliance.config import Config, HttpConfig, SubnetConfig
from appliance.http import build_app
from appliance.service import Context
from appliance.store import Store


async def main(state_dir: Path, address: str, port: int, access_log: Path) -> None:
    cfg = Config(interface="br0", address=IPv4Address(address), state_dir=state_dir,
                 log_dir=state_dir / "log", http=HttpConfig(port=port),
                 subnets=(SubnetConfig(IPv4Interface(f"{address}/24").network),))   # HTTP serves the subnets
    ctx = bootconfig.install(Context(cfg, Store(cfg.db_path)))
    app = build_app(ctx)
    log = open(access_log, "a", buffering=1)

    @web.middleware
    async def record(request, handler):
        response = await handler(request)
        log.write(f"{request.method} {request.path} {response.status}\n")
        return response

    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
