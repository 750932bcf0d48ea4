"""The guide builds (mkdocs --strict, offline, from the repository alone), its
reference pages are the code's own, and every command and campaign key is in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from hvbench.campaign import Campaign, PlatformSpec, WorkloadSpec
from hvbench.cli import cli
from hvbench.platforms import PLATFORM_KINDS
from hvbench.platforms.guest import GuestPlatform

from .conftest import ROOT


@pytest.mark.slow  # a CLI in a subprocess: make test, not test-fast
def test_the_guide_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict",
                           "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "site" / "reference" / "campaign" / "index.html").exists()
    assert (tmp_path / "site" / "troubleshooting" / "index.html").exists()


@pytest.mark.slow  # a CLI in a subprocess: make test, not test-fast
def test_reference_pages_match_the_code() -> None:
    """docs/reference/ is written from --help and the pydantic models."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_reference.py"),
                           "--check"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    reference = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## `hvbench {name}`" in reference
        if isinstance(command, click.Group):
            for sub in command.commands:
                assert f"## `hvbench {name} {sub}`" in reference


def test_every_campaign_key_has_a_meaning_and_every_command_a_guide_page() -> None:
    models = [Campaign, PlatformSpec, WorkloadSpec,
              *{d.settings_model for d in PLATFORM_KINDS.values()
                if issubclass(d, GuestPlatform)}]
    undescribed = [f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items()
                   if not f.description]
    assert undescribed == [], "give these keys a description= (the reference shows it)"
    guide = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for name in cli.commands:  # beyond the reference: each command is explained somewhere
        assert f"hvbench {name}" in guide, name


def test_the_readme_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 8000, len(readme)
    assert "make run" in readme and "make test" in readme
