"""Shared fixtures: an isolated HVBENCH_HOME and the captured real tool outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hvbench.platforms.base import Completed

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
HVBENCH = [sys.executable, "-m", "hvbench.cli"]


def load_capture(name: str) -> tuple[Completed, dict[str, Any]]:
    """A real output captured on a Debian machine by tests/capture_outputs.py."""
    record = json.loads((DATA / f"{name}.json").read_text())
    output = Completed(tuple(record["argv"]), record["stdout"], record["stderr"],
                       record["exit_code"], record["seconds"])
    return output, record["params"]


@pytest.fixture
def hvbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hvbench-home"
    monkeypatch.setenv("HVBENCH_HOME", str(home))
    return home


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HVBENCH_HOME": str(home), "COLUMNS": "200"}
