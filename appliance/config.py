"""The appliance's one typed config: a TOML file read into frozen dataclasses.

Everything is validated up front; any problem raises ConfigError whose message
names the key, so the CLI can print one line and exit 2 without touching disk.
"""
from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from services.dhcp import settings as dhcp_settings
from services.dhcp.settings import DhcpConfig, Pool, SubnetConfig
from services.fleet import settings as fleet_settings
from services.rsyncd import settings as rsyncd_settings
from services.rsyncd.settings import RsyncdConfig
from services.tomlcheck import SettingsError, check_keys as _check_keys, ip as _ip, port as _port
from services.tomlcheck import positive as _positive, take as _take
from services.names import valid_domain

DEFAULT_PATH = Path("/etc/systemimager/appliance.toml")
SERVICE_NAMES = ("dhcp", "tftp", "dns", "http", "rsyncd", "fleet")
IP_METHODS = ("static_dhcp", "dynamic_dhcp", "static", "replicant")
# Linux console= values: ttyS0, ttyS1,115200n8, ttyAMA0,115200, hvc0 ...
CONSOLE = re.compile(r"^(?P<dev>tty[A-Za-z]{0,6}(?P<unit>\d{1,3})|hvc\d{1,2})"
                     r"(?:,(?P<speed>\d{3,7})[noe]?[5-8]?r?)?$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# Every section's parser raises this one class, whose message names the key.
ConfigError = SettingsError


@dataclass(frozen=True)
class TftpConfig:
    port: int = 69
    max_sessions: int = 512
    workers: int | None = None    # transfer processes; None: one per core (at most 4), 0: none


@dataclass(frozen=True)
class HttpConfig:
    port: int = 8080
    header_timeout: float = 10.0      # a request's headers must arrive within this (slowloris)
    body_timeout: float = 60.0        # and its body within this after them
    keepalive_timeout: float = 15.0   # an idle kept-alive connection is closed after this
    max_connections_per_client: int = 32
    install_timeout: float = 1800.0   # a running install with no report this long is marked failed


@dataclass(frozen=True)
class DnsConfig:
    port: int = 53
    upstream: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True)
class Config:
    interface: str
    address: IPv4Address
    domain: str = "cluster.local"
    image_server: IPv4Address | None = None  # None: same as address
    state_dir: Path = Path("/var/lib/systemimager")
    log_dir: Path = Path("/var/log/systemimager")
    boot_dir: Path | None = None             # None: state_dir / "tftpboot"
    services: frozenset[str] = frozenset(SERVICE_NAMES)
    subnets: tuple[SubnetConfig, ...] = ()
    dhcp: DhcpConfig = field(default_factory=DhcpConfig)
    tftp: TftpConfig = field(default_factory=TftpConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    rsyncd: RsyncdConfig = field(default_factory=RsyncdConfig)
    fleet: fleet_settings.FleetSettings = field(default_factory=fleet_settings.FleetSettings)
    # Serial console for installs by host group, "default" for every other host
    # (a host's own console comes first): the manual's 13.5, by configuration.
    consoles: tuple[tuple[str, str], ...] = ()
    # Networks besides the install subnets and loopback whose clients HTTP and DNS answer
    # (an operator's workstation network); everyone else is refused.
    allow_clients: tuple[IPv4Network, ...] = ()
    source: Path | None = None

    def serves_client(self, ip: str) -> bool:
        """HTTP and DNS answer this source address: loopback, an install subnet, or allow_clients."""
        try:
            addr = IPv4Address(ip)
        except ValueError:
            return ip == "::1"
        return (addr.is_loopback or any(addr in s.network for s in self.subnets)
                or any(addr in n for n in self.allow_clients))

    def console_for(self, group: str | None) -> str | None:
        table = dict(self.consoles)
        return table.get(group) if group in table else table.get("default")

    # Derived paths: the SystemImager layout under the state directory.
    @property
    def hint_address(self) -> IPv4Address:
        return self.image_server or self.address

    @property
    def boot_url(self) -> str:
        """Where machines fetch boot files and scripts over HTTP."""
        return f"http://{self.address}:{self.http.port}/boot"

    @property
    def boot_root(self) -> Path:
        return self.boot_dir or self.state_dir / "tftpboot"

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def scripts_dir(self) -> Path:
        return self.state_dir / "scripts"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "appliance.db"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def enabled(self, service: str) -> bool:
        return service in self.services

    def subnet_for(self, ip: IPv4Address) -> SubnetConfig | None:
        return next((s for s in self.subnets if ip in s.network), None)

    def with_overrides(self, **kw: Any) -> "Config":
        return replace(self, **kw)


def parse(data: dict, source: Path | None = None) -> Config:
    """Build a validated Config from a TOML document (already decoded)."""
    top = {"interface", "address", "domain", "image_server", "state_dir", "log_dir", "boot_dir",
           "services", "subnet", "dhcp", "tftp", "http", "dns", "rsyncd", "fleet", "consoles", "allow_clients"}
    _check_keys(data, top, "")
    for key in ("interface", "address"):
        if key not in data:
            raise ConfigError(f"{key}: missing (see 'si config example')")
    interface = _take(data, "interface", "", str, "")
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", interface):
        raise ConfigError(f"interface: {interface!r} is not a valid interface name")
    address = _ip(data["address"], "address")
    domain = _take(data, "domain", "", str, "cluster.local").lower().rstrip(".")
    if not valid_domain(domain):
        raise ConfigError(f"domain: {domain!r} is not a valid DNS domain")
    image_server = _ip(data["image_server"], "image_server") if "image_server" in data else None

    def path(key: str, default: Path | None) -> Path | None:
        value = _take(data, key, "", str, None)
        if value is None:
            return default
        if not value.startswith("/"):
            raise ConfigError(f"{key}: {value!r} must be an absolute path")
        return Path(value)

    services_table = _take(data, "services", "", dict, {})
    _check_keys(services_table, set(SERVICE_NAMES), "services.")
    services = frozenset(name for name in SERVICE_NAMES
                         if _take(services_table, name, "services.", bool, True))

    subnets = dhcp_settings.parse_subnets(_take(data, "subnet", "", list, []))
    if "dhcp" in services and not subnets:
        raise ConfigError("subnet: DHCP is enabled but no [[subnet]] is configured")
    if subnets and not any(address in s.network for s in subnets):
        raise ConfigError(f"address: {address} is in none of the configured subnets")
    for s in subnets:
        for pool in s.pools:
            if address in pool:
                raise ConfigError(f"address: the server's own address {address} lies in pool {pool}")

    allow_clients = []
    for i, value in enumerate(_take(data, "allow_clients", "", list, [])):
        try:
            if not isinstance(value, str):
                raise ValueError(f"expected a network such as \"192.168.1.0/24\", not {value!r}")
            allow_clients.append(IPv4Network(value, strict=True))
        except ValueError as exc:
            raise ConfigError(f"allow_clients[{i}]: {exc}") from None

    dhcp = dhcp_settings.parse(_take(data, "dhcp", "", dict, {}))

    tftp_t = _take(data, "tftp", "", dict, {})
    _check_keys(tftp_t, {"port", "max_sessions", "workers"}, "tftp.")
    workers = _take(tftp_t, "workers", "tftp.", int, None)
    if workers is not None and not 0 <= workers <= 64:
        raise ConfigError(f"tftp.workers: {workers} is outside 0-64")
    tftp = TftpConfig(_port(tftp_t, "port", "tftp.", 69), _positive(tftp_t, "max_sessions", "tftp.", 512),
                      workers)
    http_t = _take(data, "http", "", dict, {})
    _check_keys(http_t, {"port", "header_timeout", "body_timeout", "keepalive_timeout",
                         "max_connections_per_client", "install_timeout"}, "http.")

    def seconds(key: str, default: float, most: float = 3600) -> float:
        value = float(_take(http_t, key, "http.", (int, float), default))
        if not 0 < value <= most:
            raise ConfigError(f"http.{key}: {value} must be more than 0 and at most {most:.0f} seconds")
        return value
    per_client = _take(http_t, "max_connections_per_client", "http.", int, 32)
    if not 1 <= per_client <= 65535:
        raise ConfigError(f"http.max_connections_per_client: {per_client} must be from 1 to 65535")
    http = HttpConfig(_port(http_t, "port", "http.", 8080), seconds("header_timeout", 10.0),
                      seconds("body_timeout", 60.0), seconds("keepalive_timeout", 15.0), per_client,
                      seconds("install_timeout", 1800.0, most=7 * 86400))
    dns_t = _take(data, "dns", "", dict, {})
    _check_keys(dns_t, {"port", "upstream"}, "dns.")
    dns = DnsConfig(_port(dns_t, "port", "dns.", 53),
                    tuple(_ip(v, f"dns.upstream[{i}]")
                          for i, v in enumerate(_take(dns_t, "upstream", "dns.", list, []))))
    rsyncd = rsyncd_settings.parse(_take(data, "rsyncd", "", dict, {}))

    try:
        fleet = fleet_settings.parse(_take(data, "fleet", "", dict, {}))
    except fleet_settings.SettingsError as exc:
        raise ConfigError(f"fleet.{exc}") from None

    ports = {"tftp.port": (tftp.port, "udp"), "dns.port": (dns.port, "udp"),
             "http.port": (http.port, "tcp"), "rsyncd.port": (rsyncd.port, "tcp"),
             "fleet.tracker_port": (fleet.tracker_port, "tcp"), "fleet.peer_port": (fleet.peer_port, "tcp")}
    seen: dict[tuple[int, str], str] = {}
    for key, (port, proto) in ports.items():
        if (port, proto) in seen:
            raise ConfigError(f"{key}: port {port} is already used by {seen[(port, proto)]}")
        seen[(port, proto)] = key

    consoles = []
    for group, value in _take(data, "consoles", "", dict, {}).items():
        if not GROUP_NAME.match(group):
            raise ConfigError(f"consoles.{group}: {group!r} is not a group name (letters, digits, . _ -)")
        if not isinstance(value, str) or not CONSOLE.match(value):
            raise ConfigError(f"consoles.{group}: {value!r} is not a Linux console= value like 'ttyS0,115200n8'")
        consoles.append((group, value))

    state_dir = path("state_dir", Path("/var/lib/systemimager"))
    return Config(
        interface=interface, address=address, domain=domain, image_server=image_server,
        state_dir=state_dir, log_dir=path("log_dir", Path("/var/log/systemimager")),
        boot_dir=path("boot_dir", None), services=services, subnets=subnets,
        dhcp=dhcp, tftp=tftp, http=http, dns=dns, rsyncd=rsyncd, fleet=fleet, consoles=tuple(consoles),
        allow_clients=tuple(allow_clients), source=source)


def load(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config: {path} does not exist (write one with 'si config example > {path}')") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    return parse(data, source=path)


EXAMPLE = '''\
# SystemImager appliance configuration (TOML). Every key is optional except
# interface and address. Check a file with: si config check --config FILE

interface = "br-install"       # the install network; DHCP serves on this interface only
address = "10.77.0.1"          # this server's address on that interface
domain = "cluster.example"     # install domain: DNS answers A/PTR for hosts and leases
# image_server = "10.77.0.1"   # sent to clients as DHCP option 100 (default: address)
state_dir = "/var/lib/systemimager"   # images/, scripts/, appliance.db live here
log_dir = "/var/log/systemimager"     # per-host install logs, rsyncd log
# boot_dir = "/var/lib/systemimager/tftpboot"   # TFTP and HTTP boot root
# allow_clients = ["192.168.1.0/24"]   # HTTP and DNS answer these too (default: install subnets, loopback)

[services]                     # which services 'si up' runs
dhcp = true
tftp = true
dns = true
http = true
rsyncd = true

[[subnet]]                     # repeat for each network (relayed ones too)
network = "10.77.0.0/24"
pools = ["10.77.0.100-10.77.0.199"]   # dynamic addresses; reservations come from hosts
gateway = "10.77.0.1"
dns_servers = ["10.77.0.1"]
lease_time = 3600              # seconds

[dhcp]
mode = "server"                # "proxy": answer PXE only, another server assigns addresses
enrol = false                  # true: unknown MACs are recorded (never installed unasked)
in_order = false               # true: the manual's "addclients, boot them in the order you want":
                               # an unknown machine that PXE-boots becomes the first host (in name
                               # order) with an address and no MAC yet, and installs as it
site_option = 224              # image-server hint also sent under this code (224-254)
probe_seconds = 4              # look for a rogue DHCP server before serving
loader = "ipxe"                # BIOS: "ipxe" (kernel/initrd over HTTP) or "pxelinux" (all over TFTP)
uefi_loader = "shim"           # UEFI: "shim" (Debian's signed shim and GRUB: boots with Secure Boot
                               # on or off), "ipxe" (snponly.efi: Secure Boot off only) or
                               # "syslinux" (the default with loader = "pxelinux"; Secure Boot off only)
answer_router_solicitations = true   # tell PXE clients "no IPv6 router here" (server mode):
                               # they stop waiting ~13 s for one; no route or address is given
ping_timeout = 0.5             # ping a new pool address this long before offering it (ISC's
                               # ping-check); one that answers is set aside. 0: never ping

[tftp]
port = 69
# workers = 2                  # processes that send files; default one per core (at most 4),
                               # 0 sends everything from the appliance process

[http]
port = 8080                    # boot files, iPXE scripts, API, monitor page
header_timeout = 10            # seconds for a request's headers (slow clients are closed)
body_timeout = 60              # seconds for its body
keepalive_timeout = 15         # seconds an idle connection is kept
max_connections_per_client = 32
install_timeout = 1800         # seconds without a report before a running install is marked failed

[dns]
port = 53
upstream = []                  # forward other names here; empty: refuse them

[rsyncd]
port = 873
max_connections = 64

[consoles]                     # serial console while installing, by host group ('si hosts set --group')
# default = "ttyS0,115200n8"   # every host without its own (si hosts set --console) or its group's
# rack7 = "ttyS1,57600"
'''
