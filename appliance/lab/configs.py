"""Appliance configs for lab networks (tests, benchmarks, the demo)."""
from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, StrictUndefined

def _toml_value(value) -> str:
    """A TOML value for a str, int, bool or a table of them (inline)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


_ENV = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["toml"] = _toml_value
_TEMPLATE = _ENV.from_string('''\
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
{% for key, value in dhcp.items() %}{{ key }} = {{ value | toml }}
{% endfor %}
[http]
port = {{ http_port }}
{% if fleet %}

[fleet]
{% for key, value in fleet.items() %}{{ key }} = {{ value | toml }}
{% endfor %}{% endif %}
''')


def lab_toml(state: Path, *, interface: str = "br0", address: str = "10.77.0.1",
             network: str = "10.77.0.0/24", pool: str = "10.77.0.100-10.77.0.199",
             domain: str = "lab.example",
             services: tuple[str, ...] = ("dhcp", "tftp", "dns", "http", "rsyncd", "fleet"),
             http_port: int = 8080, lease_time: int = 600, probe_seconds: float = 1,
             loader: str = "ipxe", uefi_loader: str = "shim", fleet: dict | None = None,
             dhcp: dict | None = None) -> str:
    from appliance.config import SERVICE_NAMES
    return _TEMPLATE.render(interface=interface, address=address, network=network, pool=pool,
                            domain=domain, services=services, all_services=SERVICE_NAMES,
                            http_port=http_port, lease_time=lease_time, probe_seconds=probe_seconds,
                            loader=loader, uefi_loader=uefi_loader, state=state, fleet=fleet or {},
                            dhcp=dhcp or {})
