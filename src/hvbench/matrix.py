"""Setting matrices: one platform expanded into every combination of some settings.

``matrix = {disk_bus = ["virtio-blk", "nvme"], disk_cache = ["none", "writeback"]}``
on a platform named ``qemu-kvm`` gives four variants, named after the values that
differ, in a stable order: ``qemu-kvm.virtio-blk.none``, ``qemu-kvm.virtio-blk.
writeback``, ``qemu-kvm.nvme.none``, ``qemu-kvm.nvme.writeback``. A value that is not
a word (true, 4) is named with its setting: ``iothread-on``, ``queues-4``. Names are
plain ``[\\w.-]`` text, safe in tables, file names and HTML.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

Scalar = str | int | float | bool
_WORD = re.compile(r"^[A-Za-z][\w-]*$")
MAX_NAME = 64


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, Any]  # the platform's settings with this variant's values
    levels: dict[str, Scalar]  # the matrix settings and their values here


def label(key: str, value: Scalar) -> str:
    """How a setting's value appears in a variant's name."""
    if isinstance(value, bool):
        return f"{key}-{'on' if value else 'off'}"
    text = str(value)
    if isinstance(value, str) and _WORD.match(text):
        return text
    return f"{key}-{re.sub(r'[^A-Za-z0-9_.-]', '_', text)}"


def expand(name: str, settings: dict[str, Any], matrix: dict[str, list[Scalar]]
           ) -> list[Variant]:
    """Every combination of the matrix's values (the first setting varies slowest)."""
    for key, values in matrix.items():
        if not values:
            raise UsageError(f"platform {name}: matrix setting {key!r} has no values")
        if len(set(map(repr, values))) != len(values):
            raise UsageError(f"platform {name}: matrix setting {key!r} repeats a value")
        if key in settings:
            raise UsageError(f"platform {name}: {key!r} is both a setting and a matrix "
                             "setting; keep one")
    variants = []
    keys = list(matrix)
    for combination in itertools.product(*(matrix[k] for k in keys)):
        levels = dict(zip(keys, combination, strict=True))
        variant = ".".join([name, *(label(k, v) for k, v in levels.items())])
        if len(variant) > MAX_NAME:
            raise UsageError(f"platform {name}: variant name {variant!r} is longer than "
                             f"{MAX_NAME} characters; shorten the platform's name")
        variants.append(Variant(variant, {**settings, **levels}, levels))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise UsageError(f"platform {name}: two matrix values give the same variant name "
                         f"({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    return variants


def toml_value(text: str) -> Any:
    """A command-line value read as TOML (true, 4, 0.5, [1, 2]), else kept as text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_option(text: str) -> tuple[str, str, list[Scalar]]:
    """``--matrix PLATFORM.SETTING=V1,V2`` -> (platform, setting, values); values are
    read as TOML scalars (true, 4), else kept as text."""
    target, sep, raw = text.partition("=")
    platform, dot, key = target.rpartition(".")
    if not sep or not dot or not platform or not key or not raw:
        raise UsageError(f"--matrix {text!r} is not PLATFORM.SETTING=V1,V2 (e.g. --matrix "
                         "qemu-kvm.disk_bus=virtio-blk,nvme,ide)")
    return platform, key, [toml_value(item.strip()) for item in raw.split(",")]
