"""HostSpec: a host named in a campaign, parsed once (never a bare string past it).

``local`` (this machine), ``ssh://[user@]host[:port]`` (a real KVM host or Xen dom0)
or ``lab:kvm`` / ``lab:xen`` (a nested lab under QEMU on this machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..errors import UsageError

LAB_KINDS = ("kvm", "xen")


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"


def parse_target(url: str) -> SshTarget:
    """ssh://[user@]host[:port]; anything else is a usage error."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.password:
        raise UsageError(f"--host {url!r}: expected ssh://[user@]host[:port] (keys only, "
                         "no password in the URL)")
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"--host {url!r}: the port is not a number") from None
    return SshTarget(parts.username, parts.hostname, port)


@dataclass(frozen=True)
class HostSpec:
    """Where a platform runs."""

    kind: Literal["local", "ssh", "lab"]
    text: str  # as written in the campaign (recorded with the run)
    lab: str | None = None  # "kvm" or "xen"
    target: SshTarget | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        if text == "local":
            return LOCAL
        if text.startswith("lab:"):
            kind = text[4:]
            if kind not in LAB_KINDS:
                raise UsageError(f"--host {text!r}: there are labs {', '.join(LAB_KINDS)} "
                                 "(lab:kvm, lab:xen)")
            return cls("lab", text, lab=kind)
        if text.startswith("ssh://"):
            return cls("ssh", text, target=parse_target(text))
        raise UsageError(f"{text!r} is not a host: use local, ssh://[user@]host[:port], "
                         "lab:kvm or lab:xen")

    @property
    def tag(self) -> str:
        """A short name used in platform names when a run spans several hosts."""
        if self.target is not None:
            port = self.target.port
            return self.target.host if port == 22 else f"{self.target.host}:{port}"
        return self.text.replace(":", "-")

    @property
    def shares_this_machine(self) -> bool:
        """This machine's CPUs measure it: local, or a lab nested here."""
        return self.kind != "ssh"

    def __str__(self) -> str:
        return self.text


LOCAL = HostSpec("local", "local")
