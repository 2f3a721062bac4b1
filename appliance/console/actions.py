"""What an operator may do to a host, from the web console or the CLI (`si hosts reinstall`,
`local`, `set --image`): each is a function of (store, hostname, ...) that changes the record,
records an event and returns the one line to tell the operator, or raises Refused.
"""
from __future__ import annotations

from dataclasses import replace

from services.names import valid_image_name


class Refused(Exception):
    """The action cannot be done; `status` is its HTTP status (404 no such thing, 400 bad input)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _host(store, hostname: str):
    host = store.host(hostname)
    if host is None:
        raise Refused(f"no host {hostname!r} (see 'si hosts list')", 404)
    return host


def check_image(store, image: str) -> None:
    """An image a host may be given: a valid name of an image the store has."""
    if not valid_image_name(image):
        raise Refused(f"{image!r} is not a valid image name (letters, digits and ._+-, at most 64, no '..')")
    if store.image(image) is None:
        raise Refused(f"no image {image!r} (see 'si images list'; 'si getimage' makes one)", 404)


def reinstall(store, hostname: str, by: str = "cli") -> str:
    _host(store, hostname)
    store.set_netboot(hostname, "install")
    store.event("hosts", "reinstall", f"next PXE boot autoinstalls (set by {by})", host=hostname)
    return f"{hostname}: next PXE boot autoinstalls"


def local_boot(store, hostname: str, by: str = "cli") -> str:
    _host(store, hostname)
    store.set_netboot(hostname, "local")
    store.event("hosts", "local", f"next PXE boot goes to the local disk (set by {by})", host=hostname)
    return f"{hostname}: next PXE boot boots the local disk"


def assign_image(store, hostname: str, image: str, by: str = "cli") -> str:
    host = _host(store, hostname)
    check_image(store, image)
    store.upsert_host(replace(host, image=image))
    store.event("hosts", "image", f"image {image} (set by {by})", host=hostname)
    return f"{hostname}: image {image}"


BY_NAME = {"reinstall": reinstall, "local": local_boot}
