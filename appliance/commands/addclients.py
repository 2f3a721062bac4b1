"""si addclients: name a range of clients, give them an image and addresses.

Fully by options, or in the manual's dialogue for whatever options are missing:
"Continue?", then its three sections (hostnames; soft links to an image's master
script; one IP range per subnet for the hosts files), each confirmed with "Are you
satisfied?"; sections 2 and 3 may be declined. Answers may come from a pipe.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import clients
from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store
from ._dialogue import Dialogue


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


def _number(dialogue: Dialogue, question: str, option: str) -> int:
    def check(text):
        return None if text.lstrip("-").isdigit() else f"{text!r} is not a number"
    return int(dialogue.ask(question, "", option, check))


def _intro(dialogue: Dialogue, scripts_dir: Path, etc_hosts: Path) -> None:
    dialogue.say('Welcome to the SystemImager "addclients" utility')
    dialogue.say("-" * 48)
    dialogue.say("This utility has 3 sections.")
    dialogue.say('"Section 1" asks for your hostname information.')
    dialogue.say(f'"Section 2" creates soft links from each client hostname to the "master" script of an image, '
                 f'in {scripts_dir} (for example www297.sh -> web_server_image_v1.master).')
    dialogue.say(f'"Section 3" asks for IP addresses, which it combines with the hostnames of Section 1 into '
                 f'entries in {etc_hosts}: new entries are appended, and existing entries for the same '
                 f'addresses are rewritten in place with the new names.')
    dialogue.say()


def _section1(dialogue: Dialogue, args, cfg) -> list[str]:
    dialogue.say("addclients -- Section 1 (hostname information)")
    dialogue.say("You will be asked for the domain name, the base host name, a beginning number and an ending "
                 "number: www, 7 and 11 give www7 through www11.")
    while True:
        domain = args.domain if args.domain is not None else dialogue.ask(
            "What is your domain name?", cfg.domain, "--domain")
        basename = args.basename if args.basename is not None else dialogue.ask(
            "What is the base host name that you want me to use?", "", "--basename")
        start = args.start if args.start is not None else _number(dialogue, "What number should I begin with?",
                                                                  "--start")
        end = args.end if args.end is not None else _number(dialogue, "What number should I end with?", "--end")
        try:
            names = clients.hostnames(basename, start, end)
        except clients.ClientsError as exc:
            raise CliError(str(exc)) from None
        dialogue.say(f"I will work with hostnames: {names[0]} through {names[-1]}")
        dialogue.say(f"in the domain: {domain or cfg.domain}")
        if args.yes or dialogue.yes("Are you satisfied?", False, "--yes"):
            args.domain, args.basename, args.start, args.end = domain, basename, start, end
            return names


def _section2(dialogue: Dialogue, args, cfg, store, names: list[str]) -> str | None:
    """The image whose master script the hosts link to; None: declined (no image, no links)."""
    dialogue.say()
    dialogue.say("addclients -- Section 2 (soft links to master script)")
    if not args.yes and not dialogue.yes(f'Would you like me to create soft links to a "master" script so that '
                                         f'hosts {names[0]} through {names[-1]} can be autoinstalled with that '
                                         f'image?', True):
        return None
    known = sorted({p.name[:-7] for p in cfg.scripts_dir.glob("*.master")} | {i["name"] for i in store.images()})
    dialogue.say("Here is a list of available images:")
    for name in known:
        dialogue.say(f"  {name}")
    newest = max(store.images(), key=lambda i: i["created"], default=None)
    default = getattr(args, "default_image", None) or (newest["name"] if newest else known[-1] if known else "")
    return dialogue.ask("Which image would you like these hosts to receive?", default,
                        "--image", lambda a: None if a in known else f"no image {a!r} (known: "
                                                                     f"{', '.join(known) or 'none'})")


def _section3(dialogue: Dialogue, args, names: list[str]) -> list[str] | None:
    """One address range per subnet; None: declined (no addresses, no hosts file entries)."""
    dialogue.say()
    dialogue.say(f"addclients -- Section 3 (adding or modifying {args.etc_hosts} entries)")
    dialogue.say(f"It is necessary to have an entry for each client in {args.etc_hosts}.")
    dialogue.say("I will ask you for your clients' IP addresses one subnet at a time.")
    if not args.yes and not dialogue.yes("Would you like me to make these entries for you?", True):
        return None
    ranges, placed, subnet = [], 0, 1
    while placed < len(names):
        dialogue.say(f"subnet {subnet}")
        dialogue.say(f"The first host in subnet {subnet} will be: {names[placed]}")
        first = dialogue.ask(f"What is the starting IP address for subnet {subnet}?", "", "--ip-range")
        last = dialogue.ask("What is the ending IP address?", "", "--ip-range")
        try:
            r = clients.parse_range(f"{first}-{last}")
        except clients.ClientsError as exc:
            raise CliError(str(exc)) from None
        dialogue.say(f"I will work with IP addresses: {r.first} through {r.last}")
        if args.yes or dialogue.yes("Are you satisfied?", False, "--yes"):
            ranges.append(str(r))
            placed += min(r.size, len(names) - placed)
            subnet += 1
    return ranges


def addclients(args, dialogue: Dialogue | None = None) -> int:
    cfg = load_config(args)
    store = open_store(cfg)
    interactive = any(v is None for v in (args.basename, args.start, args.end, args.image, args.ip_range))
    dialogue = dialogue or Dialogue()
    if interactive:
        _intro(dialogue, cfg.scripts_dir, args.etc_hosts)
        if not args.yes and not dialogue.yes("Continue?", True):
            raise OperationFailed("stopped: nothing written")
        names = _section1(dialogue, args, cfg)
        if args.image is None:
            args.image = _section2(dialogue, args, cfg, store, names)
        if args.ip_range is None:
            args.ip_range = _section3(dialogue, args, names)
            args.no_etc_hosts = args.no_etc_hosts or args.ip_range is None
    try:
        plan = clients.plan_clients(cfg, store, domain=args.domain, basename=args.basename,
                                    start=args.start, end=args.end, image=args.image, ranges=args.ip_range)
    except clients.ClientsError as exc:
        raise CliError(str(exc)) from None
    etc_hosts = None if args.no_etc_hosts else args.etc_hosts
    if etc_hosts is not None:  # refuse before writing anything, not halfway
        where = etc_hosts if etc_hosts.exists() else etc_hosts.parent
        if not os.access(where, os.W_OK) or not os.access(etc_hosts.parent, os.W_OK):
            raise OperationFailed(f"--etc-hosts: cannot write {etc_hosts} (or its directory, for the backup)")
    try:
        result = clients.apply_clients(cfg, store, plan, etc_hosts)
    except OSError as exc:
        raise OperationFailed(f"writing failed: {exc}") from None
    if interactive and plan.image:
        dialogue.say("Your soft links have been created.")
    if interactive and etc_hosts and args.ip_range:
        dialogue.say(f"These entries have been added to {etc_hosts}.")
    print(f"{result.hosts} hosts -> {plan.image or 'no image'}: hosts table, {result.hosts_file}"
          + (f", {etc_hosts}" if etc_hosts else "") + f"; {len(result.linked)} links")
    if result.kept:
        print(f"kept edited scripts (not links) for: {', '.join(result.kept)}")
    for r in plan.unused_ranges:
        print(f"note: range {r} was not needed")
    return 0
