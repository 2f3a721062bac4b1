"""si hosts: list hosts, and flip a host between reinstall and local boot."""
from __future__ import annotations

from ._common import CliError, OperationFailed, add_config_arg, load_config, open_store
from ._output import add_action, add_json_arg, emit, print_fields


def register(sub) -> None:
    p = sub.add_parser("hosts", help="list hosts; mark one for reinstall or local boot")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", help="the hosts table")
    add_config_arg(ls)
    add_json_arg(ls)
    ls.set_defaults(func=list_hosts)
    st = actions.add_parser("set", help="set a host's MAC, image, group or serial console (creates it if new)")
    add_config_arg(st)
    st.add_argument("hostname")
    st.add_argument("--mac", help="the machine's MAC address: its DHCP reservation and boot config key")
    st.add_argument("--ip", help="fixed address (static_dhcp reservation)")
    st.add_argument("--force", action="store_true",
                    help="reserve an address another client still leases (it is handed out once that lease ends)")
    st.add_argument("--image", help="image its autoinstall installs")
    st.add_argument("--group", help="group name, for pushupdate --group")
    st.add_argument("--console", help="serial console for installs, e.g. ttyS0,115200n8 ('' clears)")
    st.set_defaults(func=set_host)
    add_action(actions, "show", "one host: its settings, lease, next boot and last install", show_host,
               "hostname", json=True)
    add_action(actions, "delete", "remove a host (its reservation, boot config, script link)", delete_host,
               "hostname")
    for name, netboot, text in (("reinstall", "install", "next PXE boot autoinstalls HOST"),
                                ("local", "local", "next PXE boot goes to HOST's own disk")):
        q = actions.add_parser(name, help=text)
        add_config_arg(q)
        q.add_argument("hostname")
        q.set_defaults(func=lambda args, netboot=netboot: set_netboot(args, netboot))


def set_host(args) -> int:
    import ipaddress
    import time
    from dataclasses import replace
    from services.dhcp.addresses import why_unassignable

    from services.names import valid_domain
    from ..console.actions import Refused, check_image
    from ..store.records import Host, normalise_mac
    cfg = load_config(args)
    store = open_store(cfg)
    if not valid_domain(args.hostname) or "." in args.hostname:
        raise CliError(f"hostname: {args.hostname!r} is not a valid host name")
    host = store.host(args.hostname) or Host(args.hostname)
    changes = {}
    if args.mac is not None:
        try:
            changes["mac"] = normalise_mac(args.mac)
        except ValueError as exc:
            raise CliError(f"--mac: {exc}") from None
        other = store.host_by_mac(changes["mac"])
        if other and other.hostname != args.hostname:
            raise CliError(f"--mac: {changes['mac']} already belongs to {other.hostname}")
    if args.ip is not None:
        try:
            ip = ipaddress.IPv4Address(args.ip)
        except ValueError:
            raise CliError(f"--ip: {args.ip!r} is not an IPv4 address") from None
        subnet = cfg.subnet_for(ip)
        if cfg.subnets and subnet is None:
            raise CliError(f"--ip: {ip} is in none of the configured subnets")
        if subnet is not None and (why := why_unassignable(ip, subnet.network, cfg.address, subnet.gateway)):
            raise CliError(f"--ip: {ip} {why}")
        other = store.host_by_ip(str(ip))
        if other and other.hostname != args.hostname:
            raise CliError(f"--ip: {ip} already belongs to {other.hostname}")
        mac = changes.get("mac", host.mac)
        holder = next((l for l in store.leases() if l.ip == str(ip) and l.mac != mac
                       and l.state in ("bound", "offered") and l.expires > time.time()), None)
        if holder is not None and not args.force:
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.expires))
            raise CliError(f"--ip: {ip} is leased to {holder.mac} until {until}; --force reserves it anyway "
                           f"(DHCP hands it out once that lease ends or is released)")
        changes["ip"] = str(ip)
    if args.image is not None:
        if args.image:          # an image that exists, as addclients and the console ask
            try:
                check_image(store, args.image)
            except Refused as exc:
                raise CliError(f"--image: {exc}") from None
        changes["image"] = args.image or None
    if args.group is not None:
        changes["grp"] = args.group or None
    if args.console is not None:
        changes["console"] = args.console or None
    host = replace(host, **changes)
    store.upsert_host(host)
    print(f"{host.hostname}: mac {host.mac or '-'} ip {host.ip or '-'} image {host.image or '-'} "
          f"group {host.grp or '-'} console {host.console or '-'}")
    return 0


def list_hosts(args) -> int:
    cfg = load_config(args)
    hosts = open_store(cfg).hosts()
    # How each host's next install pulls its image: the [fleet] table's choice for its
    # image and group (the appliance may still fall back to rsync, and says why then).
    transport = lambda h: cfg.fleet.transport_for(h.image, h.grp) if h.image else None
    emit(("hostname", "mac", "ip", "image", "group", "transport", "next boot", "console"),
         [(h.hostname, h.mac, h.ip, h.image, h.grp, transport(h),
           "autoinstall" if h.netboot == "install" else "local disk", h.console) for h in hosts],
         records=[{"hostname": h.hostname, "mac": h.mac, "ip": h.ip, "image": h.image, "group": h.grp,
                   "transport": transport(h), "netboot": h.netboot, "console": h.console} for h in hosts],
         as_json=args.json, empty="no hosts yet (si addclients, si hosts set)")
    return 0


def set_netboot(args, netboot: str) -> int:
    from ..console.actions import Refused, local_boot, reinstall
    store = open_store(load_config(args))
    try:
        print((reinstall if netboot == "install" else local_boot)(store, args.hostname))
    except Refused as exc:
        raise OperationFailed(f"hostname: {exc}") from None
    return 0


def _host_or_fail(store, hostname: str):
    host = store.host(hostname)
    if host is None:
        raise OperationFailed(f"hostname: no host {hostname!r} (see 'si hosts list')")
    return host


def show_host(args) -> int:
    import json
    import time

    from ..bootconfig import decide
    from ..store.installs import SUMMARY_TAIL
    cfg = load_config(args)
    store = open_store(cfg)
    host = _host_or_fail(store, args.hostname)
    lease = store.lease_for_mac(host.mac) if host.mac else None
    runs = store.installs(hostname=host.hostname, tail=SUMMARY_TAIL)
    entry = decide(host, cfg)
    if args.json:
        print(json.dumps({"host": host.as_dict(), "next_boot": entry.reason,
                          "lease": lease.as_dict() if lease else None,
                          "installs": [{k: v for k, v in r.as_dict().items() if k != "log"} for r in runs]},
                         indent=2))
        return 0
    when = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"
    rows = [("hostname", host.hostname), ("mac", host.mac or "-"), ("ip", host.ip or "-"),
            ("image", host.image or "-"), ("group", host.grp or "-"), ("console", host.console or "-"),
            ("transport", cfg.fleet.transport_for(host.image, host.grp) if host.image else "-"),
            ("next boot", entry.reason),
            ("lease", f"{lease.ip} until {when(lease.expires)} ({lease.state})" if lease else "-")]
    if runs:
        last = runs[0]
        rows.append(("last run", f"{last.kind} of {last.image or '-'}: {last.state}, {last.phase or '-'} "
                                 f"{last.percent:.0f}%, started {when(last.started)}"))
        rows.append(("runs", str(len(runs))))
    print_fields(rows)
    return 0


def delete_host(args) -> int:
    from ..clients import remove_host
    cfg = load_config(args)
    store = open_store(cfg)
    _host_or_fail(store, args.hostname)
    for line in remove_host(cfg, store, args.hostname):
        print(line)
    return 0
