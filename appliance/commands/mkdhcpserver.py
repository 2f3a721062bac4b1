"""si mkdhcpserver: write an equivalent ISC dhcpd / Kea / dnsmasq config, as the manual's
mkdhcpserver did: its questions (domain, network, netmask, range, three DNS servers, gateway,
image server), the values shown back, "Are you satisfied?", the old file kept as
`<file>.beforesystemimager`, and the warning for machines with several interfaces.

For sites that keep their own DHCP server: same subnets, pools, reservations (hosts with
a MAC), image-server hint and PXE/iPXE boot policy as the appliance's built-in server. The
answers' defaults are the appliance's config; `--yes` takes them without asking.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from services.dhcp import export

from ..config import Pool
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store
from ._dialogue import Dialogue

# Where each server reads its config on Debian.
DEFAULT_OUTPUT = {"isc": Path("/etc/dhcp/dhcpd.conf"), "kea": Path("/etc/kea/kea-dhcp4.conf"),
                  "dnsmasq": Path("/etc/dnsmasq.d/systemimager.conf")}
BACKUP_SUFFIX = ".beforesystemimager"
RESTART = {"isc": "systemctl restart isc-dhcp-server", "kea": "systemctl restart kea-dhcp4-server",
           "dnsmasq": "systemctl restart dnsmasq"}
ONLY_ON = {"isc": 'INTERFACESv4="{nic}" in /etc/default/isc-dhcp-server',
           "kea": '"interfaces": ["{nic}"] under "interfaces-config" in the file',
           "dnsmasq": "interface={nic} in the file"}


def register(sub) -> None:
    p = sub.add_parser("mkdhcpserver", help="write a dhcpd.conf, Kea or dnsmasq config for your own DHCP server")
    add_config_arg(p)
    p.add_argument("--format", choices=export.FORMATS, default="isc",
                   help="isc (dhcpd.conf), kea (kea-dhcp4 JSON) or dnsmasq (default: isc)")
    p.add_argument("--output", type=Path,
                   help="the file to write ('-': standard output; default: where Debian's server reads it, "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_OUTPUT.items()) + ")")
    p.add_argument("--by-address", action="store_true",
                   help="reservations give addresses, not host names (by default isc and dnsmasq name "
                        "the host, as the manual's mkdhcpstatic did, so editing /etc/hosts moves it)")
    p.add_argument("--yes", action="store_true", help="ask nothing: the config's values and these options")
    p.add_argument("--domain", help="DNS domain name")
    p.add_argument("--network", help="network number (or NETWORK/PREFIX)")
    p.add_argument("--netmask", help="netmask, e.g. 255.255.255.0")
    p.add_argument("--range", dest="pool", metavar="FIRST-LAST", help="the dynamic range")
    p.add_argument("--dns", action="append", metavar="IP", help="a DNS server (up to three, repeat)")
    p.add_argument("--gateway", help="default gateway")
    p.add_argument("--image-server", help="the image server clients are told of (option 100)")
    p.set_defaults(func=mkdhcpserver)


# --- the answers: what the manual asks, defaulting to the config -----------------------
def _ip(text: str) -> str | None:
    try:
        ipaddress.IPv4Address(text)
        return None
    except ValueError:
        return f"{text!r} is not an IPv4 address"


def _optional_ip(text: str) -> str | None:
    return None if text == "" else _ip(text)


def _values(cfg, args) -> dict:
    subnet = cfg.subnets[0]
    pool = subnet.pools[0] if subnet.pools else None
    dns = (args.dns or [str(d) for d in subnet.dns_servers]) + ["", "", ""]
    network = ipaddress.IPv4Network(args.network, strict=False) if args.network and "/" in args.network else None
    first, _, last = (args.pool or "").partition("-")
    return {
        "domain": args.domain or cfg.domain,
        "network": str(network.network_address) if network else args.network or str(subnet.network.network_address),
        "netmask": str(network.netmask) if network else args.netmask or str(subnet.network.netmask),
        "first": first or (str(pool.first) if pool else ""),
        "last": last or (str(pool.last) if pool else ""),
        "dns1": dns[0], "dns2": dns[1], "dns3": dns[2],
        "gateway": args.gateway or (str(subnet.gateway) if subnet.gateway else ""),
        "image_server": args.image_server or str(cfg.hint_address),
    }


QUESTIONS = [("domain", "What is your domain name?", None),
             ("network", "What is your network number?", _ip),
             ("netmask", "What is your netmask?", _ip),
             ("first", "What is the starting IP address for your dhcp range?", _ip),
             ("last", "What is the ending IP address for your dhcp range?", _ip),
             ("dns1", "What is the IP address of your first DNS server?", _optional_ip),
             ("dns2", "What is the IP address of your second DNS server?", _optional_ip),
             ("dns3", "What is the IP address of your third DNS server?", _optional_ip),
             ("gateway", "What is the IP address of your default gateway?", _optional_ip),
             ("image_server", "What is the IP address of imageserver?", _ip)]
OPTION = {"domain": "--domain", "network": "--network", "netmask": "--netmask", "first": "--range",
          "last": "--range", "dns1": "--dns", "dns2": "--dns", "dns3": "--dns", "gateway": "--gateway",
          "image_server": "--image-server"}
SHOWN = [("domain", "DNS Domain Name"), ("network", "network number"), ("netmask", "netmask"),
         ("first", "starting IP address for your dhcp range"), ("last", "ending IP address for your dhcp range"),
         ("dns1", "first DNS server"), ("dns2", "second DNS server"), ("dns3", "third DNS server"),
         ("gateway", "default gateway"), ("image_server", "imageserver")]


def _ask_values(dialogue: Dialogue, values: dict) -> dict:
    dialogue.say("Type your response or hit <Enter> to accept [defaults]. If you don't have a response, "
                 "such as no first or second DNS server, just hit <Enter> and none will be used.")
    while True:
        dialogue.say()
        for key, question, check in QUESTIONS:
            values[key] = dialogue.ask(question, values[key], OPTION[key], check)
        dialogue.ask("What is the air speed velocity of the common swallow?", "", "")
        dialogue.say("Ahh, but seriously folks...")
        dialogue.say()
        dialogue.say("Here are the values you have chosen:")
        dialogue.say("#####")
        for key, label in SHOWN:
            dialogue.say(f"{label + ':':<41}{values[key]}")
        dialogue.say("#####")
        if dialogue.yes("Are you satisfied?", False, "--yes"):
            return values


def _apply(cfg, values: dict):
    """The config with the answers in its first subnet (the others are exported as configured)."""
    try:
        network = ipaddress.IPv4Network(f"{values['network']}/{values['netmask']}")
    except ValueError as exc:
        raise CliError(f"--network/--netmask: {exc}") from None
    pool = Pool(ipaddress.IPv4Address(values["first"]), ipaddress.IPv4Address(values["last"]))
    for name, ip in (("range start", pool.first), ("range end", pool.last)):
        if ip not in network:
            raise CliError(f"--range: the {name} {ip} is not in {network}")
    if pool.first > pool.last:
        raise CliError(f"--range: {pool.first} comes after {pool.last}")
    dns = tuple(ipaddress.IPv4Address(values[k]) for k in ("dns1", "dns2", "dns3") if values[k])
    gateway = ipaddress.IPv4Address(values["gateway"]) if values["gateway"] else None
    first = replace(cfg.subnets[0], network=network, pools=(pool,), dns_servers=dns, gateway=gateway)
    return replace(cfg, domain=values["domain"], image_server=ipaddress.IPv4Address(values["image_server"]),
                   subnets=(first, *cfg.subnets[1:]))


def physical_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    """NICs with a device behind them (not lo, bridges, veths or tunnels)."""
    try:
        return sorted(p.name for p in sys_class_net.iterdir() if (p / "device").exists())
    except OSError:
        return []


def mkdhcpserver(args, dialogue: Dialogue | None = None) -> int:
    cfg = load_config(args)
    if not cfg.subnets:
        raise CliError("subnet: no [[subnet]] in the config, nothing to export")
    dialogue = dialogue or Dialogue()
    output = args.output or DEFAULT_OUTPUT[args.format]
    to_stdout = str(output) == "-"
    backup = output.with_name(output.name + BACKUP_SUFFIX) if not to_stdout else None
    values = _values(cfg, args)
    if not args.yes:
        dialogue.say('Welcome to the SystemImager "mkdhcpserver" command. This command will prepare this '
                     f'computer to be a DHCP server by creating the following file:')
        dialogue.say(f"  {'standard output' if to_stdout else output}")
        if not to_stdout:
            dialogue.say("If there is an existing file, it will be backed up as:")
            dialogue.say(f"  {backup}")
        if not dialogue.yes("Continue?", False, "--yes"):
            raise OperationFailed("stopped: nothing written")
        values = _ask_values(dialogue, values)
    for key, _, check in QUESTIONS:        # options given with --yes are checked too
        if check and (problem := check(values[key])):
            raise CliError(f"{OPTION[key]}: {problem}")
    text = export.render(_apply(cfg, values), open_store(cfg).hosts(), args.format, by_name=not args.by_address)
    if to_stdout:
        print(text, end="")
    else:
        _write(output, backup, text)
        print(f"wrote {args.format} config to {output}" + (f" (the old one is {backup})" if backup.exists() else ""))
        dialogue.say(f"The dhcp server configuration file ({output}) has been created for you. "
                     "Please verify it for accuracy.")
        dialogue.say("If this file does not look satisfactory, you can run this command again to re-create it: "
                     '"si mkdhcpserver"')
    nics = physical_interfaces()
    if len(nics) > 1:
        dialogue.say(f"WARNING!: This machine has several network interfaces ({', '.join(nics)}): have the DHCP "
                     f"server answer only on the one your clients are on, with "
                     + ONLY_ON[args.format].format(nic=cfg.interface) + ".")
    dialogue.say(f"Also, be sure to start or restart your DHCP server ({RESTART[args.format]}).")
    _note_reservations(args)
    return 0


def _write(output: Path, backup: Path, text: str) -> None:
    """Whole or not at all; the file from before SystemImager is kept once, as the manual promised."""
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        if output.exists() and not backup.exists():
            shutil.copy2(output, backup)
        tmp.write_text(text)
        os.replace(tmp, output)      # never leave a half-written config behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperationFailed(f"--output: cannot write {output}: {exc.strerror}") from None


def _note_reservations(args) -> None:
    if args.by_address:
        return
    if args.format not in export.BY_NAME:
        print(f"si mkdhcpserver: note: {args.format} reservations take addresses, not host names: "
              "change an address in the hosts table (si hosts set) and export again", file=sys.stderr)
    else:
        print("si mkdhcpserver: note: reservations name their hosts; the DHCP server finds their "
              "addresses in its /etc/hosts (addclients wrote them) or DNS", file=sys.stderr)
