"""The parts of a campaign: its platforms, its workloads and an interference study's
victim and aggressors (campaign.py puts them together and plans the trials).

An interference study (``[interference]``) measures one victim workload in a guest
while aggressors run beside it: in neighbour guests of the same kind booted on the
same host (``where = "guest"``) or on the host itself (``where = "host"``). Each
guest platform P becomes P itself (solo: the neighbours booted and idle) and one
condition per aggressor, ``P.with-AGGRESSOR``, that shares P's guests; the plan
interleaves them like platforms. ``workload = "none"`` is a control: the same as solo,
so its verdict should be no change (a difference there is noise or drift).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import UsageError
from .hosts.spec import HostSpec
from .platforms import PLATFORM_KINDS
from .platforms.guest import GuestPlatform
from .workloads import get_workload

#: how long an aggressor is asked to run: until it is stopped, in practice
AGGRESSOR_SECONDS = 3600
#: the most neighbour guests one aggressor may use
MAX_NEIGHBOURS = 16


class AggressorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workload: str = Field(description='a workload that runs for a set time (stress-ng-*, '
                          'fio-*, iperf3-tcp, sockperf-pingpong), or "none": a control '
                          "condition (neighbours booted, nothing run)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="the workload's parameters (its duration is "
                                               "set by hvbench: until stopped)")
    guests: int = Field(1, ge=1, le=MAX_NEIGHBOURS, description='with where = "guest": '
                        "in how many neighbour guests it runs")
    where: Literal["guest", "host"] = Field("guest", description='"guest": in neighbour '
                                            'guests of the same kind; "host": on the host '
                                            "itself")

    @property
    def label(self) -> str:
        """How the condition is named: ``P.with-LABEL``."""
        if self.workload == "none":
            return "none"
        name = f"host-{self.workload}" if self.where == "host" else self.workload
        return f"{name}-x{self.guests}" if self.where == "guest" and self.guests > 1 \
            else name

    def checked_params(self) -> Any:
        """The workload's parameters, running until stopped (UsageError when it cannot
        be an aggressor)."""
        workload = get_workload(self.workload)
        if workload.duration is None:
            raise UsageError(f"aggressor {self.workload} runs until its work is done, not "
                             "for a set time; choose one that does (stress-ng-*, fio-*, "
                             "iperf3-tcp, sockperf-pingpong)")
        return workload.params({**self.params, workload.duration: AGGRESSOR_SECONDS})


class PlatformSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.:@-]*$",
                      description="the platform's name in results and reports")
    kind: str | None = Field(None, description='the platform kind (unset: the name, e.g. '
                                               '"native"); see the platforms page')
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="the kind's settings (below)")
    host: str | None = Field(None, description="where it runs (unset: the campaign's host)")
    matrix: dict[str, list[str | int | float | bool]] | None = Field(
        None, description="settings to vary: the platform becomes one variant per "
                          "combination")
    # a variant of a matrix, as expanded: the platform it came from and its levels there
    family: str | None = Field(None, description="set by a matrix's expansion: the "
                                                 "platform a variant came from")
    levels: dict[str, str | int | float | bool] | None = Field(
        None, description="set by a matrix's expansion: a variant's settings' values")
    # a condition of an interference study, as expanded: the platform whose guests it
    # uses and the aggressor run beside each of its trials
    shares: str | None = Field(None, description="set by an interference study's "
                               "expansion: the platform whose guests this condition uses")
    aggressor: AggressorSpec | None = Field(None, description="set by an interference "
                                            "study's expansion: what runs beside the "
                                            "victim in this condition")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        if host is not None:
            parsed_host(host)
        return host

    @property
    def driver(self) -> str:
        return self.kind or self.name

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str | None) -> str | None:
        if kind is not None and kind not in PLATFORM_KINDS:
            raise ValueError(f"unknown platform kind {kind!r}; choose from: "
                             f"{', '.join(PLATFORM_KINDS)}")
        return kind


class WorkloadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="a workload (hvbench list)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="the workload's parameters (the workloads page)")



class InterferenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    victim: WorkloadSpec = Field(description="the workload measured: a name or a table "
                                 "(the campaign's only workload)")
    neighbours: list[AggressorSpec] = Field(min_length=1, description="the aggressors, "
                                            "one condition each (tables, below)")
    settle: float = Field(1.0, ge=0, le=60, description="seconds the aggressors run "
                          "before the victim's trial starts")

    @field_validator("victim", mode="before")
    @classmethod
    def _victim_name(cls, victim: Any) -> Any:
        return {"name": victim} if isinstance(victim, str) else victim

    @model_validator(mode="after")
    def _distinct(self) -> InterferenceSpec:
        labels = [a.label for a in self.neighbours]
        if len(set(labels)) != len(labels):
            twice = sorted({label for label in labels if labels.count(label) > 1})
            raise ValueError(f"the aggressor {twice[0]} is given twice; each condition "
                             "is named after its aggressor")
        return self

    @property
    def neighbour_guests(self) -> int:
        """Neighbour guests each guest platform boots: as many as the most any
        aggressor uses."""
        return max((a.guests for a in self.neighbours
                    if a.where == "guest" and a.workload != "none"), default=0)

    def check(self) -> None:
        get_workload(self.victim.name).params(self.victim.params)
        for aggressor in self.neighbours:
            if aggressor.workload != "none":
                aggressor.checked_params()


def is_guest_kind(spec: PlatformSpec) -> bool:
    driver = PLATFORM_KINDS.get(spec.driver)
    return driver is not None and issubclass(driver, GuestPlatform)


def interference_variants(platforms: list[PlatformSpec], study: InterferenceSpec
                          ) -> list[PlatformSpec]:
    """Every platform with its conditions after it: a guest platform boots the
    neighbours and gets one condition per aggressor; a platform without guests
    (native) one per host aggressor. Already expanded (a campaign read back from its
    run): unchanged."""
    if any(spec.shares for spec in platforms):
        return platforms
    if not any(map(is_guest_kind, platforms)) and \
            all(a.where == "guest" for a in study.neighbours):
        raise ValueError("interference needs a guest platform (qemu-tcg, qemu-kvm, "
                         "libvirt, ...) for its neighbour guests")
    needed = study.neighbour_guests
    expanded = []
    for spec in platforms:
        guest = is_guest_kind(spec)
        if guest and needed:
            if int(spec.settings.get("guests", 1)) > 1:
                raise ValueError(f"platform {spec.name}: an interference study measures one "
                                 "guest; drop its 'guests' setting (or density)")
            spec = spec.model_copy(update={"settings": {**spec.settings,
                                                        "neighbours": needed}})
        expanded.append(spec)
        for aggressor in study.neighbours:
            if not guest and aggressor.where == "guest":
                continue  # a platform without guests has no neighbours to run it in
            name = f"{spec.name}.with-{aggressor.label}"
            if len(name) > 64:
                raise ValueError(f"condition name {name!r} is longer than 64 characters; "
                                 "shorten the platform's name")
            expanded.append(spec.model_copy(update={
                "name": name, "kind": spec.driver, "matrix": None, "family": None,
                "levels": None, "shares": spec.name, "aggressor": aggressor}))
    return expanded


def parsed_host(host: str) -> HostSpec:
    """The host, or a ValueError pydantic reports with the field's name."""
    try:
        return HostSpec.parse(host)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
