"""Checks for a TOML settings table, shared by every section's parser.

Each raises SettingsError with a message that names the key it checked, so
the CLI prints one line and nothing is written. The appliance's ConfigError
is this same class.
"""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any


class SettingsError(ValueError):
    """A settings value is wrong; the message names the key."""


def take(table: dict, key: str, prefix: str, kind: type | tuple, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass; never accept it where a number is wanted.
    if isinstance(value, bool) and bool not in kinds:
        raise SettingsError(f"{prefix}{key}: expected {kind_name(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise SettingsError(f"{prefix}{key}: expected {kind_name(kinds)}, got {type(value).__name__} {value!r}")
    return value


def kind_name(kinds: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def check_keys(table: dict, allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = prefix.rstrip(".") or "top level"
            raise SettingsError(f"{prefix}{key}: unknown key (allowed in {where}: {', '.join(sorted(allowed))})")


def ip(value: Any, key: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except (ValueError, TypeError):
        raise SettingsError(f"{key}: {value!r} is not an IPv4 address") from None


def port(table: dict, key: str, prefix: str, default: int) -> int:
    value = take(table, key, prefix, int, default)
    if not 1 <= value <= 65535:
        raise SettingsError(f"{prefix}{key}: port {value} is outside 1-65535")
    return value


def positive(table: dict, key: str, prefix: str, default: int | float, kind=int) -> Any:
    value = take(table, key, prefix, kind if kind is int else (int, float), default)
    if value <= 0:
        raise SettingsError(f"{prefix}{key}: must be greater than 0, got {value}")
    return value
