"""Shared-library closure of host binaries, so guests run exactly the host's binaries.

``ldd`` (glibc's) lists what the dynamic loader would map; it is run on host
binaries only, never on anything a guest supplied.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ..errors import HvbenchError

_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


_CACHE: dict[tuple[str, int, int], list[Path]] = {}


def needed_libraries(binary: Path, library_path: str | None = None) -> list[Path]:
    """Absolute paths of the libraries ``binary`` loads (empty for static binaries);
    ``library_path`` adds directories (packages unpacked but not installed)."""
    info = binary.stat()
    key = (f"{binary}:{library_path}", info.st_size, info.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _ldd(binary, library_path)
    return _CACHE[key]


def _ldd(binary: Path, library_path: str | None = None) -> list[Path]:
    env = {**os.environ, "LD_LIBRARY_PATH": library_path} if library_path else None
    try:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                              timeout=30, check=False, env=env)
    except FileNotFoundError:
        raise HvbenchError("'ldd' is missing: apt-get install libc-bin") from None
    if "not a dynamic executable" in done.stdout + done.stderr:
        return []
    if done.returncode != 0:
        raise HvbenchError(f"ldd {binary} failed: {done.stderr.strip()[:200]}")
    missing = [line for line in done.stdout.splitlines() if "not found" in line]
    if missing:
        raise HvbenchError(f"{binary} needs libraries that are not installed: "
                           f"{'; '.join(m.strip() for m in missing)}")
    return [Path(m.group(1)) for line in done.stdout.splitlines()
            if (m := _LINE.match(line))]


def closure(binaries: Iterable[Path], library_path: str | None = None) -> list[Path]:
    """Every library needed by any of ``binaries``, each listed once, sorted."""
    found: set[Path] = set()
    for binary in binaries:
        found.update(needed_libraries(binary, library_path))
    return sorted(found)


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"
