"""What a run's platforms are built with, and the metadata of the hosts they run on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import sysinfo
from .campaign import Campaign, PlatformSpec
from .errors import HvbenchError, StoreError, TrialError
from .hosts import LOCAL, HostSpec
from .hosts.lab import Labs
from .platforms import PlatformContext
from .platforms.native import NativePlatform
from .workloads import payload


def run_labs(say: Callable[[str], None] | None) -> Labs:
    """The labs of one run; a lab host's image carries every workload, so one lab serves
    every run."""
    return Labs(payload(None), say)


def platform_context(campaign: Campaign, spec: PlatformSpec, labs: Labs,
                     say: Callable[[str], None] | None) -> PlatformContext:
    """What a platform of this campaign is built with: its host, how to reach it, the
    run's labs and what its guest images carry."""
    return PlatformContext(
        host=campaign.host_of(spec), ssh_identity=campaign.ssh_identity,
        accept_new_host_key=campaign.accept_new_host_key, labs=labs,
        payload=payload(campaign.payload_workloads), say=say)


def sysinfo_for_hosts(campaign: Campaign | None, labs: Labs,
                      say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Metadata of the hosts the platforms run on, gathered on each; a run on several
    hosts records each under "hosts" (the first is the run's own)."""
    hosts = campaign.hosts if campaign is not None else [LOCAL]
    found = {}
    for host in hosts:
        try:
            found[str(host)] = _host_info(host, campaign, labs, say)
        except HvbenchError as exc:
            if len(hosts) == 1 or isinstance(exc, StoreError):
                raise
            # one host of several is down: the run goes on without it (its trials fail
            # with the reason when its turn comes)
            found[str(host)] = {"host": str(host), "down": str(exc)}
            if say:
                say(f"warning: host {host.tag} is down: {exc}")
    info = dict(found[str(hosts[0])])
    if len(hosts) > 1:
        info["hosts"] = found
    return info


def _host_info(host: HostSpec, campaign: Campaign | None, labs: Labs,
               say: Callable[[str], None] | None) -> dict[str, Any]:
    context = PlatformContext(  # metadata only: no tools needed
        host=host, say=say, bundle_tools=False, labs=labs,
        ssh_identity=campaign.ssh_identity if campaign else None,
        accept_new_host_key=campaign.accept_new_host_key if campaign else False)
    platform = NativePlatform("host", context=context)
    try:
        with platform.open() as machine:
            info = sysinfo.collect(machine)
    except TrialError as exc:
        raise HvbenchError(str(exc)) from None
    info["host"] = str(host)
    return info
