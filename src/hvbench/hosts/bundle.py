"""Run the appliance's own tool binaries on a remote host, through its bundled loader.

A guest runs the binaries carried in the appliance; for the comparison to be
fair, the remote host's baseline must run the very same binaries, not whatever
version its distribution installed. The appliance's initramfs is already placed
on the host (by content hash) for its guests; here it is unpacked once next to
it, and each ELF tool is started as ``ld-linux --library-path BUNDLE_LIBS TOOL``
so it loads the bundled libraries, never the host's.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..appliance import libs
from ..errors import TrialError
from ..machine import Machine, WrappedMachine
from .base import Host

LOADER = "/lib64/ld-linux-x86-64.so.2"
LIBRARY_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib"]


#: unpack $2 (a cpio archive) as the directory $1 once. Each unpacker works in a
#: directory of its own, finished with a .done, and the first finished takes the name:
#: several hosts sharing a home (or several hvbench) may unpack the same bundle at once
_UNPACK = r"""
[ -e "$1/.done" ] && exit 0
command -v cpio >/dev/null || { echo "cpio is not installed" >&2; exit 1; }
t=$(mktemp -d "$1.part.XXXXXX") || exit 1
if ! (cd "$t" && cpio -idm < "$2" 2>/dev/null && touch .done); then rm -rf "$t"; exit 1; fi
[ -e "$1" ] && [ ! -e "$1/.done" ] && rm -rf "$1"  # left half done by a killed unpacker
[ -e "$1" ] || mv "$t" "$1" 2>/dev/null
[ -d "$t" ] && rm -rf "$t"  # another unpacker finished first
[ -d "$1/${t##*/}" ] && rm -rf "$1/${t##*/}"  # moved into the winner's as it took the name
[ -e "$1/.done" ]
"""


class BundledMachine(WrappedMachine):
    """A host's Machine whose workload tools come from the appliance bundle."""

    def __init__(self, inner: Machine, host: Host, image: image_mod.Image,
                 say: Any = None):
        super().__init__(inner)
        self.host = host
        self.image = image
        placed = host.place({"initramfs": image.cpio}, image.key, say)
        self.root = posixpath.join(posixpath.dirname(placed["initramfs"]), "root")
        self._unpack(placed["initramfs"])
        #: tool name -> its path inside the bundle (ELF programs only: scripts and
        #: their helpers keep the host's own interpreters)
        self.tools: dict[str, str] = {}
        for binary in image.manifest.get("binaries", []):
            if "/hvprobe/" in binary:
                binary = "/usr/local/bin/hvprobe"
            elif not libs.is_elf(Path(binary).resolve()):
                continue
            self.tools.setdefault(posixpath.basename(binary), binary)
        self._library_path = ":".join(self.root + d for d in LIBRARY_DIRS)
        self._check_loader()

    def _check_loader(self) -> None:
        """Fail clearly when the bundle cannot run on this host (another architecture,
        a noexec home)."""
        done = self.inner.run([self.root + LOADER, "--version"], timeout=60)
        if done.exit_code != 0:
            raise TrialError(f"{self.label} cannot run the bundled tools' loader: "
                             f"{(done.stderr or done.stdout).strip()[:200]}")

    def _unpack(self, initramfs: str) -> None:
        """Unpack the initramfs beside it once (cpio: GNU or busybox)."""
        self.host.check(["sh", "-c", _UNPACK, "sh", self.root, initramfs], 900,
                        "unpacking the tool bundle")

    def rewrite(self, argv: Sequence[str]) -> list[str]:
        args = [str(a) for a in argv]
        bundled = self.tools.get(posixpath.basename(args[0]))
        if bundled is None or (args[0].startswith("/") and args[0] != bundled
                               and not args[0].startswith(self.root)):
            return args
        return [self.root + LOADER, "--library-path", self._library_path,
                "--argv0", posixpath.basename(bundled), self.root + bundled, *args[1:]]

    def which(self, binary: str) -> str | None:
        if binary in self.tools:
            return self.tools[binary]
        return self.inner.which(binary)

    def which_all(self, binaries: Sequence[str]) -> dict[str, str | None]:
        found = self.inner.which_all([b for b in binaries if b not in self.tools])
        return {b: self.tools[b] if b in self.tools else found[b] for b in binaries}

    def info(self) -> dict[str, Any]:
        found = dict(self.inner.info())
        found["tools_from"] = (f"appliance {self.image.key} (the guests' own binaries, run "
                               "through its bundled loader)")
        found["bundle"] = self.root
        return found


