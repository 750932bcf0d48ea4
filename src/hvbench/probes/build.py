"""Compile hvprobe.c with the host's C compiler, cached by source and compiler.

The same binary runs natively and, carried in the appliance, in every guest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from ..errors import HvbenchError, MissingToolError
from ..paths import write_atomic

SOURCE = "hvprobe.c"


def source_text() -> bytes:
    return resources.files("hvbench.probes").joinpath(SOURCE).read_bytes()


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(cache: Path) -> Path:
    """The compiled hvprobe for this source and compiler (built once, then cached)."""
    cc = compiler()
    if cc is None:
        raise MissingToolError("hvprobe", "cc", "gcc")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.splitlines()[:1]
    key = hashlib.sha256(source_text() + "\n".join(version).encode()).hexdigest()[:16]
    target = cache / "hvprobe" / key / "hvprobe"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = target.parent / SOURCE
    write_atomic(source, source_text())
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)  # each builder its own output: two at once never mix their bytes
    staging = Path(name)
    try:
        done = subprocess.run([cc, "-O2", "-pthread", "-Wall", "-o", str(staging),
                               str(source)], capture_output=True, text=True, timeout=300,
                              check=False)
        if done.returncode != 0:
            raise HvbenchError(f"compiling hvprobe failed: {done.stderr.strip()[-300:]} "
                               "(apt-get install gcc libc6-dev)")
        staging.chmod(0o755)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    return target
