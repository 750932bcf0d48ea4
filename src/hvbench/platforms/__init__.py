"""Platform drivers by kind."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Completed, Machine, Platform
from .native import NativePlatform

PLATFORM_KINDS: dict[str, type[Platform]] = {
    "native": NativePlatform,
}

PLATFORM_DESCRIPTIONS = {
    "native": "the host itself, no virtualization (the usual baseline)",
}


def make_platform(name: str, kind: str, settings: dict[str, Any]) -> Platform:
    try:
        driver = PLATFORM_KINDS[kind]
    except KeyError:
        raise UsageError(f"unknown platform {kind!r}; choose from: {', '.join(PLATFORM_KINDS)}"
                         ) from None
    return driver(name=name, settings=dict(settings))


__all__ = ["PLATFORM_KINDS", "Completed", "Machine", "Platform", "make_platform"]
