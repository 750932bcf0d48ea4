"""The Platform contract every driver implements.

A Platform is where workloads run (native, a QEMU guest, a Xen domU, ...), with
its settings. ``Platform.open()`` yields a Machine (see ``machine.py``) and always
cleans up.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..appliance.image import Payload
from ..errors import UsageError
from ..hosts import LOCAL, HostSpec, connect
from ..hosts.base import Host
from ..machine import Machine

if TYPE_CHECKING:
    from ..hosts.lab import Labs

SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True)
class PlatformContext:
    """What a Platform is handed when it is built: where it runs, how to reach that
    host, what its guest images carry and where it reports long steps."""

    host: HostSpec = LOCAL
    ssh_identity: str | None = None
    accept_new_host_key: bool = False
    #: what this campaign's guests (and an SSH host's tool bundle) carry
    payload: Payload = field(default_factory=Payload)
    #: the run's labs (booted when first needed, stopped when the run is done with them)
    labs: Labs | None = None
    #: on an SSH host, run the appliance's binaries (off when only reading metadata)
    bundle_tools: bool = True
    say: Callable[[str], None] | None = None

    def connect(self) -> Host:
        return connect(self.host, self.ssh_identity, self.accept_new_host_key, self.labs)

    @property
    def over_ssh(self) -> bool:
        return self.host.kind == "ssh"


@dataclass
class Platform(ABC):
    """A named place to run workloads, with its settings."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    context: PlatformContext = field(default_factory=PlatformContext)

    @property
    def say(self) -> Callable[[str], None]:
        return self.context.say or (lambda _text: None)

    def parse_settings(self, model: type[SettingsT]) -> SettingsT:
        """The settings as ``model``; a bad one is a usage error naming it."""
        try:
            return model(**self.settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise UsageError(f"platform {self.name}: "
                             + (f"setting {where}: {message}" if where else message)
                             ) from None

    def validate(self) -> None:
        """Reject bad settings before anything starts (UsageError)."""
        return None

    @abstractmethod
    def open(self) -> contextlib.AbstractContextManager[Machine]:
        """Bring the machine up; the context manager always tears it down."""

    def opens_beside_others(self) -> bool:
        """Whether this platform may open while others of its host open too, each from
        a thread of its own: only where its guests keep the hypervisor's clock (a guest
        calibrating its own while others boot miscounts time) and nothing it starts
        here is tied to the opening thread."""
        return False

    def describe(self) -> dict[str, Any]:
        """Settings as recorded in the run metadata."""
        return {"name": self.name, "kind": type(self).__name__, **self.settings}


