"""HostSpec: a host named in a campaign, parsed once (never a bare string past it).

``local`` (this machine), ``ssh://[user@]host[:port]`` (a real KVM host or Xen dom0;
``?identity=KEY&lock=PATH#name`` may add its own key, its measurement lock's path and
its name, as an inventory's hosts do) or ``lab:kvm`` / ``lab:xen`` (a nested lab under
QEMU on this machine).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ..errors import UsageError

LAB_KINDS = ("kvm", "xen")


#: a host's name in an inventory (the fragment of its URL): PLATFORM@NAME in results
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,62}$")
#: what a host URL's query may say about the host (never a secret: a key's path)
_QUERY_KEYS = ("identity", "lock")


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int
    identity: str | None = None  # this host's private key file (else the campaign's)
    lock: str | None = None  # the measurement lock's path on the host (else LOCK_PATH)
    name: str | None = None  # its inventory name

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"


def parse_target(url: str) -> SshTarget:
    """ssh://[user@]host[:port][?identity=KEY&lock=PATH][#name]; anything else is a
    usage error."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") \
            or parts.password:
        raise UsageError(f"--host {url!r}: expected ssh://[user@]host[:port] (keys only, "
                         "no password in the URL)")
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"--host {url!r}: the port is not a number") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown or any(len(v) != 1 or not v[0] for v in query.values()):
        raise UsageError(f"--host {url!r}: the query may give identity=KEY_FILE and "
                         "lock=PATH, once each")
    if parts.fragment and not _NAME.match(parts.fragment):
        raise UsageError(f"--host {url!r}: a host name after '#' is letters, digits, "
                         "'.', '_' and '-'")
    return SshTarget(parts.username, parts.hostname, port,
                     identity=query.get("identity", [None])[0],
                     lock=query.get("lock", [None])[0], name=parts.fragment or None)


def ssh_url(user: str | None, host: str, port: int, identity: str | None = None,
            lock: str | None = None, name: str | None = None) -> str:
    """The host URL parse_target reads back (an inventory's hosts become these)."""
    address = f"[{host}]" if ":" in host else host
    query = urlencode({k: v for k, v in (("identity", identity), ("lock", lock)) if v})
    return (f"ssh://{quote(user, safe='') + '@' if user else ''}{address}:{port}"
            + (f"?{query}" if query else "") + (f"#{name}" if name else ""))


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
            if self.target.name:
                return self.target.name
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


def recorded_host(campaign: Mapping[str, Any], platform: Mapping[str, Any]) -> str:
    """The host a platform of a stored campaign ran on, as written there (a run over
    several hosts records each platform's; one host is the campaign's)."""
    default = campaign.get("host") or "local"
    return str(platform.get("host") or (default if isinstance(default, str) else "local"))
