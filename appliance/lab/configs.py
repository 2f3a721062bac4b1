"""Appliance configs for lab networks (tests, benchmarks, the demo)."""
from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, StrictUndefined

_TEMPLATE = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string('''\
# Lab appliance config (generated)
interface = "{{ interface }}"
address = "{{ address }}"
domain = "{{ domain }}"
state_dir = "{{ state }}/state"
log_dir = "{{ state }}/log"

[services]
{% for name in all_services %}{{ name }} = {{ "true" if name in services else "false" }}
{% endfor %}
[[subnet]]
network = "{{ network }}"
pools = ["{{ pool }}"]
gateway = "{{ address }}"
dns_servers = ["{{ address }}"]
lease_time = {{ lease_time }}

[dhcp]
probe_seconds = {{ probe_seconds }}
loader = "{{ loader }}"
uefi_loader = "{{ uefi_loader }}"

[http]
port = {{ http_port }}
''')


def lab_toml(state: Path, *, interface: str = "br0", address: str = "10.77.0.1",
             network: str = "10.77.0.0/24", pool: str = "10.77.0.100-10.77.0.199",
             domain: str = "lab.example", services: tuple[str, ...] = ("dhcp", "tftp", "dns", "http", "rsyncd"),
             http_port: int = 8080, lease_time: int = 600, probe_seconds: float = 1,
             loader: str = "ipxe", uefi_loader: str = "shim") -> str:
    from appliance.config import SERVICE_NAMES
    return _TEMPLATE.render(interface=interface, address=address, network=network, pool=pool,
                            domain=domain, services=services, all_services=SERVICE_NAMES,
                            http_port=http_port, lease_time=lease_time, probe_seconds=probe_seconds,
                            loader=loader, uefi_loader=uefi_loader, state=state)
