"""Per-image autoinstall scripts: partition schemes + fstab -> `<image>.master`."""
from .render import render_master, write_master_script

__all__ = ["render_master", "write_master_script"]
