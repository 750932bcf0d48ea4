"""Where hvbench keeps its data: ``$HVBENCH_HOME`` (default ~/.local/share/hvbench)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Root of the store, scratch space and artifacts."""
    configured = os.environ.get("HVBENCH_HOME")
    if configured:
        return Path(configured).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "hvbench"


def database_path() -> Path:
    return home() / "results.sqlite"


def scratch_root() -> Path:
    """Scratch files for disk workloads live on the store's disk, not on tmpfs."""
    return home() / "scratch"
