"""Hosts: the machine whose hypervisor hvbench drives (this one, one over SSH, a lab)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .base import Host
from .spec import LOCAL, HostSpec

if TYPE_CHECKING:
    from .lab import Labs


def connect(spec: HostSpec, identity: str | None = None, accept_new_host_key: bool = False,
            labs: Labs | None = None) -> Host:
    """The Host ``spec`` names; a lab comes from the run's ``labs`` session, which boots it
    when needed and stops it when the run is done with it."""
    if spec.kind == "local":
        from .local import LocalHost

        return LocalHost()
    if spec.kind == "lab":
        if labs is None or spec.lab is None:
            raise UsageError(f"{spec}: a lab is reached through a run (hvbench run --host "
                             f"{spec}) or started with 'hvbench {spec.text.replace(':', ' ')}'")
        return labs.host(spec.lab)
    from .ssh import SshConnection
    from .sshhost import SshHost

    assert spec.target is not None
    identity = spec.target.identity or identity  # the host's own key first
    key = Path(identity).expanduser() if identity else None
    return SshHost(SshConnection(spec.target, key, accept_new_host_key)).open()


__all__ = ["LOCAL", "Host", "HostSpec", "connect"]
