"""si console: the web console's operator token (actions in the console need it)."""
from __future__ import annotations

from ._common import add_config_arg, load_config
from ._output import add_action


def register(sub) -> None:
    p = sub.add_parser("console", help="the web console: its address and the operator token its actions need")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add_action(actions, "token", "print the operator token (made now if the appliance never started)", show_token)
    q = actions.add_parser("url", help="the console's address, with the token in it (opens read-write)")
    add_config_arg(q)
    q.set_defaults(func=show_url)


def show_token(args) -> int:
    from ..console import token
    print(token.ensure(load_config(args).state_dir))
    return 0


def show_url(args) -> int:
    from ..console import token
    cfg = load_config(args)
    # The fragment never reaches a server log or a proxy; the page moves it to session storage.
    print(f"http://{cfg.address}:{cfg.http.port}/#token={token.ensure(cfg.state_dir)}")
    return 0
