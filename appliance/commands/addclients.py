"""si addclients: name a range of clients, give them an image and addresses.

Fully by options, or interactively in the manual's three sections (hostnames,
the image to link, one IP range per subnet) for whatever options are missing.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import clients
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store


def register(sub) -> None:
    p = sub.add_parser("addclients", help="assign an image and addresses to a range of client hostnames")
    add_config_arg(p)
    p.add_argument("--domain", help="DNS domain of the clients (default: the config's domain)")
    p.add_argument("--basename", help="base host name, e.g. www gives www7, www8, ...")
    p.add_argument("--start", type=int, help="first number")
    p.add_argument("--end", type=int, help="last number")
    p.add_argument("--image", help="image these hosts receive (<image>.master)")
    p.add_argument("--ip-range", action="append", default=None, metavar="FIRST-LAST",
                   help="addresses for the hosts, one range per subnet, used in order (repeatable)")
    p.add_argument("--etc-hosts", type=Path, default=Path("/etc/hosts"),
                   help="hosts file to add the clients to (default /etc/hosts)")
    p.add_argument("--no-etc-hosts", action="store_true", help="leave /etc/hosts alone")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=addclients)


class _Asker:
    """Prompts on stdin for what the options left out (the manual's dialogue)."""

    def __init__(self, stream=None, out=None) -> None:
        self.stream = stream or sys.stdin
        self.out = out or sys.stdout

    def ask(self, question: str, default: str = "", option: str = "") -> str:
        self.out.write(f"{question} [{default}]: ")
        self.out.flush()
        line = self.stream.readline()
        if not line:
            raise CliError(f"{option or 'input'}: no answer (give it as an option when not interactive)")
        return line.strip() or default

    def yes(self, question: str, default: bool) -> bool:
        answer = self.ask(f"{question} ({'[y]/n' if default else 'y/[n]'})", "y" if default else "n")
        return answer.lower().startswith("y")

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")


def _number(asker: _Asker, question: str, option: str) -> int:
    text = asker.ask(question, "", option)
    try:
        return int(text)
    except ValueError:
        raise CliError(f"{option}: {text!r} is not a number") from None


def addclients(args, asker: _Asker | None = None) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    interactive = any(v is None for v in (args.basename, args.start, args.end, args.image, args.ip_range))
    asker = asker or _Asker()
    if interactive:
        asker.say('Welcome to the SystemImager "addclients" utility')
        asker.say()
        asker.say("addclients -- Section 1 (hostname information)")
        if args.domain is None:
            args.domain = asker.ask("What is your domain name?", cfg.domain, "--domain")
        if args.basename is None:
            args.basename = asker.ask("What is the base host name that you want me to use?", "", "--basename")
        if args.start is None:
            args.start = _number(asker, "What number should I begin with?", "--start")
        if args.end is None:
            args.end = _number(asker, "What number should I end with?", "--end")
        try:
            names = clients.hostnames(args.basename, args.start, args.end)
        except clients.ClientsError as exc:
            raise CliError(str(exc)) from None
        asker.say(f"I will work with hostnames: {names[0]} through {names[-1]}")
        asker.say(f"in the domain: {args.domain or cfg.domain}")
        if not args.yes and not asker.yes("Are you satisfied?", False):
            raise OperationFailed("stopped: nothing written")
        if args.image is None:
            asker.say()
            asker.say("addclients -- Section 2 (soft links to master script)")
            known = sorted({p.name[:-7] for p in cfg.scripts_dir.glob("*.master")} |
                           {i["name"] for i in store.images()})
            asker.say("Here is a list of available images:")
            for name in known:
                asker.say(f"  {name}")
            args.image = asker.ask("Which image would you like these hosts to receive?",
                                   known[-1] if known else "", "--image")
        if args.ip_range is None:
            asker.say()
            asker.say("addclients -- Section 3 (adding or modifying /etc/hosts entries)")
            asker.say("I will ask you for your clients' IP addresses one subnet at a time.")
            args.ip_range = []
            remaining = len(names)
            subnet = 1
            while remaining > 0:
                first_host = names[len(names) - remaining]
                asker.say(f"subnet {subnet}: the first host in subnet {subnet} will be: {first_host}")
                first = asker.ask(f"What is the starting IP address for subnet {subnet}?", "", "--ip-range")
                last = asker.ask("What is the ending IP address?", "", "--ip-range")
                try:
                    r = clients.parse_range(f"{first}-{last}")
                except clients.ClientsError as exc:
                    raise CliError(str(exc)) from None
                asker.say(f"I will work with IP addresses: {r.first} through {r.last}")
                args.ip_range.append(str(r))
                remaining -= min(r.size, remaining)
                subnet += 1
    try:
        plan = clients.plan_clients(cfg, store, domain=args.domain, basename=args.basename,
                                    start=args.start, end=args.end, image=args.image, ranges=args.ip_range)
    except clients.ClientsError as exc:
        raise CliError(str(exc)) from None
    if interactive and not args.yes:
        first, last = plan.clients[0], plan.clients[-1]
        asker.say(f"{len(plan.clients)} hosts: {first.fqdn} ({first.ip}) .. {last.fqdn} ({last.ip}) "
                  f"-> {plan.image}.master")
        if not asker.yes("Write the hosts table, hosts files and links?", True):
            raise OperationFailed("stopped: nothing written")
    etc_hosts = None if args.no_etc_hosts else args.etc_hosts
    if etc_hosts is not None:  # refuse before writing anything, not halfway
        where = etc_hosts if etc_hosts.exists() else etc_hosts.parent
        if not os.access(where, os.W_OK) or not os.access(etc_hosts.parent, os.W_OK):
            raise OperationFailed(f"--etc-hosts: cannot write {etc_hosts} (or its directory, for the backup)")
    try:
        result = clients.apply_clients(cfg, store, plan, etc_hosts)
    except OSError as exc:
        raise OperationFailed(f"writing failed: {exc}") from None
    print(f"{result.hosts} hosts -> {plan.image}: hosts table, {result.hosts_file}"
          + (f", {etc_hosts}" if etc_hosts else "") + f"; {len(result.linked)} links")
    if result.kept:
        print(f"kept edited scripts (not links) for: {', '.join(result.kept)}")
    for r in plan.unused_ranges:
        print(f"note: range {r} was not needed")
    return 0
