"""Where hvbench keeps its data: ``$HVBENCH_HOME`` (default ~/.local/share/hvbench)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def home() -> Path:
    """Root of the store, scratch space and artifacts."""
    configured = os.environ.get("HVBENCH_HOME")
    if configured:
        found = Path(configured).expanduser()
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        found = Path(data) / "hvbench"
    if found.exists() and not found.is_dir():
        raise UsageError(f"{found} (HVBENCH_HOME) is a file, not a directory: point "
                         "HVBENCH_HOME at a directory")
    return found


def database_path() -> Path:
    return home() / "results.sqlite"


def scratch_root() -> Path:
    """Scratch files for disk workloads live on the store's disk, not on tmpfs."""
    return home() / "scratch"


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` all at once: readers see the old file or the new
    one, never a part, and writers at the same moment (threads of one hvbench too)
    each use a staging file of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        if mode is not None:
            os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
