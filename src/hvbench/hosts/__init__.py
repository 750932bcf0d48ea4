"""Hosts: the machine whose hypervisor hvbench drives (this one, one over SSH, a lab)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..appliance.image import Payload
from .base import Host


def connect(spec: str, identity: str | None = None, accept_new_host_key: bool = False,
            say: Callable[[str], None] | None = None, lab_payload: Payload | None = None
            ) -> Host:
    """The Host named by ``--host``: 'local', 'ssh://[user@]host[:port]' or 'lab:KIND'
    (a lab's image carries ``lab_payload``)."""
    if spec == "local":
        from .local import LocalHost

        return LocalHost()
    if spec.startswith("lab:"):
        from .lab import lab_host

        return lab_host(spec[4:], lab_payload or Payload(), say=say)
    from .ssh import SshConnection, SshHost, parse_target

    key = Path(identity).expanduser() if identity else None
    return SshHost(SshConnection(parse_target(spec), key, accept_new_host_key)).open()
