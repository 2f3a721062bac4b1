"""The records services share with the store that keeps them: a host and a DHCP lease.

They live here, below both, so DHCP and DNS read the same shapes the appliance's
store hands out without importing the appliance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Host:
    hostname: str
    mac: str | None = None
    ip: str | None = None
    image: str | None = None
    grp: str | None = None
    netboot: str = "install"      # 'install': next PXE boot autoinstalls; 'local': boot disk
    console: str | None = None    # e.g. "ttyS0,115200n8" for a serial console

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Lease:
    mac: str
    ip: str
    hostname: str | None
    expires: float
    state: str = "bound"

    def as_dict(self) -> dict:
        return asdict(self)



def normalise_mac(mac: str) -> str:
    """'AA-BB-CC-DD-EE-FF' or 'aabb.ccdd.eeff' -> 'aa:bb:cc:dd:ee:ff'; ValueError otherwise."""
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    stripped = mac.lower().replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12 or stripped != digits:
        raise ValueError(f"{mac!r} is not a MAC address")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
