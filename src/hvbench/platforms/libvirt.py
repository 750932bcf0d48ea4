"""The ``libvirt`` platform: the appliance as a transient libvirt domain, on any URI.

hvbench generates the domain XML (``libvirtxml``), starts it with ``createXML`` (a
transient domain: nothing is defined), reaches the agent through libvirt (a stream
on the domain's virtio-serial channel, so a remote URI works the same) and destroys
the domain on success, failure, Ctrl-C and SIGTERM. A domain left by an hvbench that
died (SIGKILL) is found by the owner recorded in its metadata and destroyed before
the next start. The shared lifecycle is GuestMachine's; this module is its hooks.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..appliance import image as image_mod
from ..collect import Collector, HostKernel
from ..errors import GuestDied, TrialError, UsageError
from ..hosts.agent import Ready
from ..hosts.base import Host
from ..hosts.channel import AgentChannel
from ..hosts.owner import owner, stale
from ..hosts.virt import binding, connect, disconnect, message, open_channel, version
from ..machine import Machine
from .accounting import LibvirtStats
from .choose import kvm_usable
from .guest import GuestMachine, GuestPlatform
from .guestcfg import GuestSettings, tail
from .libvirttpl import Template, diff, load, read_template, template_xml
from .libvirtxen import SCRATCH as XEN_SCRATCH
from .libvirtxen import xen_domain_xml
from .libvirtxml import AGENT_CHANNEL, XEN_TYPES, DomainFiles, LibvirtSettings, domain_xml, owner_of
from .qemucfg import SCRATCH_DEVICE, USER_NET, describe, kernel_cmdline
from .xencfg import xen_cmdline

if TYPE_CHECKING:
    import libvirt


class LibvirtMachine(GuestMachine):
    """A transient libvirt domain booted from the appliance, driven through its agent."""

    settings: LibvirtSettings

    def __init__(self, platform: LibvirtPlatform, image: image_mod.Image,
                 settings: LibvirtSettings, host: Host):
        super().__init__(platform, image, settings, host)
        self.scratch_device = SCRATCH_DEVICE[settings.disk_bus]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", platform.name).strip("-")[:40]
        self.domain_name = f"hvbench-{safe}-{uuid.uuid4().hex[:8]}"
        self.virt_type: str = settings.virt_type or "qemu"
        self.xml = ""
        self.uri = settings.uri or ""
        self.versions: dict[str, str] = {}
        self._connection: libvirt.virConnect | None = None
        self._domain: libvirt.virDomain | None = None
        self._console: str | None = None
        self.template: Template | None = None
        self._sockets: str | None = None  # on the host: the agent channel's socket

    # -- lifecycle ---------------------------------------------------------------
    def check_host(self) -> None:
        if self.host.remote and not self.settings.uri:
            own = self.host.libvirt_uri()  # a lab's daemon, started now
            if own is None:
                raise UsageError(f"platform {self.name}: on {self.host.label} set 'uri' to "
                                 "that host's libvirt (e.g. 'qemu+ssh://root@HOST/system')")
            self.settings = self.settings.model_copy(update={"uri": own})
        connection = self.connection()
        self.uri = connection.getURI()
        self.versions = {"libvirt": version(connection.getLibVersion()),
                         "hypervisor": f"{connection.getType()} "
                                       f"{version(connection.getVersion())}"}
        self.template = self._template(connection)
        if self.template is not None:  # what it decides is what the records show
            self.settings = self.settings.model_copy(update=self.template.decided)
            self.scratch_device = SCRATCH_DEVICE[self.settings.disk_bus]
            self.virt_type = self.template.decided["virt_type"]
        else:
            self.virt_type = self.settings.virt_type or self._default_type(connection)
        if self.xen:
            self.scratch_device = XEN_SCRATCH
            # Xen has no user networking; and xl's guests' memory by default, so that
            # a few domains fit beside a small dom0 (the lab's)
            defaults = {"network": "none", "memory_mib": 512}
            self.settings = self.settings.model_copy(update={
                k: v for k, v in defaults.items() if k not in self.settings.model_fields_set})
        self.sweep()

    @property
    def xen(self) -> bool:
        """Whether the domain is a Xen one (libxl), not QEMU's."""
        return self.virt_type in XEN_TYPES

    def connection(self) -> libvirt.virConnect:
        """The connection, opened again after a restart; once the guest has booted, a
        connection that fails is a failed trial (the daemon died), not a usage error."""
        if self._connection is None:
            try:
                self._connection = connect(self.settings.uri)
            except UsageError as exc:
                if not self.xml:  # no domain was ever started: the URI itself is wrong
                    raise
                raise TrialError(str(exc)) from None
        return self._connection

    def _default_type(self, connection: libvirt.virConnect) -> str:
        """kvm where the connection offers it and, on this machine, KVM can really boot
        Linux (a /dev/kvm may exist and still not run it: see choose.py); else qemu."""
        capabilities = connection.getCapabilities()
        if "<domain type='xen'" in capabilities:  # PVH needs the kernel's PVH note
            return "xen-pvh" if self.image.pvh else "xen-pv"
        if "<domain type='kvm'" not in capabilities:
            return "qemu"
        if urlparse(self.uri).hostname in (None, "", "localhost") and not self.host.remote:
            return "kvm" if kvm_usable(self.platform.say)[0] else "qemu"
        return "kvm"

    def _template(self, connection: libvirt.virConnect) -> Template | None:
        """The user's template: a file, or a defined domain's XML (only read)."""
        lib = binding()
        if self.settings.template:
            return load(self.settings.template)
        if not self.settings.domain:
            return None
        try:
            text = connection.lookupByName(self.settings.domain).XMLDesc(
                lib.VIR_DOMAIN_XML_INACTIVE)
        except lib.libvirtError as exc:
            raise UsageError(f"platform {self.name}: cannot read domain "
                             f"{self.settings.domain!r} from {self.uri}: {message(exc)}"
                             ) from None
        return read_template(text, f"domain {self.settings.domain}")

    def sweep(self) -> None:
        """Destroy hvbench domains whose hvbench died (SIGKILL leaves them running)."""
        lib = binding()
        for domain in self.connection().listAllDomains(0):
            if not domain.name().startswith("hvbench-"):
                continue
            try:
                recorded = owner_of(domain.XMLDesc(0))
                if recorded is not None and stale(recorded):
                    domain.destroy()
                    self.platform.say(f"destroyed domain {domain.name()}, left running by a "
                                      f"dead hvbench (pid {recorded.get('pid')})")
            except lib.libvirtError:  # gone meanwhile
                continue

    def image_files(self) -> dict[str, Path]:
        """QEMU and Xen PVH boot the vmlinux (by its PVH note), Xen PV too where it has
        a PV entry note (else the bzImage, which libxl unpacks at each boot)."""
        kernel = self.image.bzimage if self.virt_type == "xen-pv" and not self.image.pv_elf \
            else self.image.kernel
        if self.virt_type == "xen-pvh" and not self.image.pvh:
            raise UsageError(f"platform {self.name}: xen-pvh boots a PVH vmlinux; this "
                             "kernel has none (use virt_type = 'xen-pv')")
        return {"kernel": kernel, "initramfs": self.image.initramfs}

    def start(self, started: float) -> tuple[Ready, dict[str, float]]:
        """Create the transient domain and wait for the agent on its channel."""
        lib = binding()
        assert self._dir is not None
        scratch, self._console = f"{self._dir}/scratch.img", f"{self._dir}/console.log"
        self.host.make_scratch_disk(scratch, self.settings.disk_size)
        self._sockets = self.host.make_dir("socket")
        files = DomainFiles(self._files["kernel"], self._files["initramfs"], scratch,
                            self._console, f"{self._sockets}/agent.sock")
        cmdline = "" if self.xen else kernel_cmdline(self.settings, None)
        if self.xen:
            self.xml = xen_domain_xml(
                self.settings, self.virt_type, self.domain_name, files,
                xen_cmdline(self.virt_type.removeprefix("xen-"), XEN_SCRATCH, None,
                            bool(self.host.nested), self.settings.kernel_args),
                owner(), bool(self.host.nested))
        elif self.template is not None:
            self.xml = template_xml(self.template, self.settings, self.domain_name, files,
                                    cmdline, owner())
        else:
            self.xml = domain_xml(self.settings, self.virt_type, self.domain_name, files,
                                  cmdline, owner())
        try:
            self._domain = self.connection().createXML(self.xml, 0)
        except lib.libvirtError as exc:
            raise TrialError(f"libvirt could not start the {self.name} guest: "
                             f"{message(exc)}") from None
        return self.await_agent(
            started, started + (self.settings.boot_timeout or 300), self._open_agent,
            0.25 if self.host.remote else 0.05,
            None if self.host.remote or self.xen else Path(self._console))

    def _open_agent(self) -> AgentChannel:
        """The agent's channel (QEMU), or the PV console it speaks on (Xen)."""
        assert self._domain is not None
        pipe = open_channel(self.connection(), self._domain,
                            None if self.xen else AGENT_CHANNEL)
        return AgentChannel.over_socket(self.host, pipe.socket, pipe)

    def collectors(self) -> list[Collector]:
        """The guest's kernel, libvirt's accounting of the domain, the host's kernel."""
        found: list[Collector] = super().collectors()
        if self._domain is not None:
            found.append(LibvirtStats(self._domain, self.xen))
        return [*found, HostKernel(self.host, "host_kernel")]

    def running(self) -> bool:
        return self._state() == "running"

    def _state(self) -> str:
        """'running', 'gone' (no such domain: transient domains vanish when they stop)
        or libvirt's complaint (the daemon unreachable)."""
        lib = binding()
        if self._domain is None:
            return "gone"
        try:
            return "running" if self._domain.isActive() else "gone"
        except lib.libvirtError as exc:
            if exc.get_error_code() == lib.VIR_ERR_NO_DOMAIN:
                return "gone"
            return message(exc)

    def linger(self, seconds: float) -> None:
        deadline = seconds
        while deadline > 0 and self._state() == "running":
            self.host.pause(0.1)
            deadline -= 0.1

    def raise_if_gone(self, when: str) -> None:
        state = self._state()
        if state == "running":
            return
        log = self.boot_log()
        if "Kernel panic" in log:
            cause = "the guest kernel panicked"
        elif state == "gone":
            cause = f"domain {self.domain_name} stopped"
        else:
            cause = f"the connection to libvirt ({self.uri}) broke: {state}"
        raise GuestDied(f"{cause} {when} on {self.platform.name}; boot log: {tail(log)}")

    def boot_log(self) -> str:
        if self._console is None:
            return ""
        if self.xen:  # xenconsoled keeps every domain's console (the lab runs it so)
            return self.host.native().read_file(
                f"/var/log/xen/console/guest-{self.domain_name}.log") or ""
        return self.host.native().read_file(self._console) or ""

    def destroy(self) -> None:
        """Destroy the domain; if libvirt cannot be reached (its daemon died), kill the
        domain's QEMU on the host, so that nothing is left running either way."""
        lib = binding()
        domain, self._domain = self._domain, None
        if domain is not None:
            try:
                domain.destroy()
            except lib.libvirtError as exc:
                if exc.get_error_code() != lib.VIR_ERR_NO_DOMAIN:
                    self.host.run(["xl", "destroy", self.domain_name] if self.xen else
                                  ["pkill", "-KILL", "-f", f"guest={self.domain_name},"],
                                  timeout=60)
        if self._sockets is not None:
            self.host.remove(self._sockets)
            self._sockets = None
        connection, self._connection = self._connection, None
        if connection is not None:
            disconnect(connection)

    def network_absent(self) -> str | None:
        if self.settings.network == "user":
            return None
        return f"{self.platform.name} has no network (network = 'none')"

    def network_peer(self) -> tuple[Machine, str, str]:
        if self.settings.network != "user":
            raise TrialError(str(self.network_absent()))
        return self.host.native(), "127.0.0.1", USER_NET[1]  # slirp forwards the gateway

    def info(self) -> dict[str, Any]:
        found = {**self.common_info(), "uri": self.uri, "domain": self.domain_name,
                 "virt_type": self.virt_type, "domain_xml": self.xml, **self.versions,
                 **self._template_info()}
        if self.xen:
            return {**found, "accelerator": "xen", "hypervisor_kind": "xen",
                    "kernel_boot": "bzImage" if self.virt_type == "xen-pv" else "PVH vmlinux",
                    "disk": {"format": "raw", "size": self.settings.disk_size,
                             "bus": "xen-blkfront (xvdb)", "filesystem": "ext4"},
                    "network": "none"}
        return {**found, "accelerator": "kvm" if self.virt_type == "kvm" else "tcg",
                "kernel_boot": "PVH vmlinux" if self.image.pvh else "bzImage",
                **describe(self.settings, None)}


    def _template_info(self) -> dict[str, Any]:
        if self.template is None or not self.xml:
            return {}
        return {"template": self.template.source,
                "template_diff": diff(self.template, self.xml)}


class LibvirtPlatform(GuestPlatform):
    """A guest of any libvirt connection (QEMU/KVM, local or remote)."""

    kind = "libvirt"
    settings_model = LibvirtSettings

    def validate(self) -> None:
        """Settings, and a template file read and checked before anything starts."""
        super().validate()
        settings = self.guest_settings()
        assert isinstance(settings, LibvirtSettings)
        if settings.template:
            load(settings.template)

    def machine(self, image: image_mod.Image, settings: GuestSettings, host: Host
                ) -> GuestMachine:
        assert isinstance(settings, LibvirtSettings)
        return LibvirtMachine(self, image, settings, host)
