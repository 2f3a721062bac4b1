"""The operator token: console actions need it, reading does not.

Made at the appliance's first start (or by `si console token`) as a file only root reads,
under the state directory; the browser sends it as `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

FILE = "console-token"


def path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE


def ensure(state_dir: Path) -> str:
    """The token, made now if there is none (written whole or not at all, mode 0600)."""
    p = path(state_dir)
    try:
        token = p.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    tmp = p.with_name(f".{FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, p)
    return token


def read(state_dir: Path) -> str | None:
    try:
        return path(state_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def authorised(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the token (compared in constant time)."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())
