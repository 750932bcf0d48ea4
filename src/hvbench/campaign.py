"""What to run: a validated campaign (from CLI flags or a TOML file) and its plan.

The plan is the ordered list of trials. Per workload, each platform first gets
one warm-up trial (recorded, never used in statistics); then repetition r runs
every platform once, in an order shuffled with the campaign's seed, so drift on
the machine (thermal, background load) hits all platforms alike.
"""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from . import matrix as matrix_mod
from .errors import UsageError
from .hosts.spec import HostSpec
from .platforms import PLATFORM_KINDS, make_platform
from .platforms.guest import GuestPlatform
from .specs import (
    InterferenceSpec,
    PlatformSpec,
    WorkloadSpec,
    interference_variants,
    parsed_host,
)
from .storeurl import masked
from .trial import Trial
from .verdicts import DEFAULT_MARGIN, LookPlan
from .workloads import get_workload
from .workloads.suites import get_suite


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m', '1.5h' (a bad one is a ValueError naming the forms)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platforms: list[PlatformSpec] = Field(min_length=1, description="the platforms to "
                                          'compare: names ("native") or tables (below)')
    workloads: list[WorkloadSpec] = Field(min_length=1, description="the workloads: names "
                                          "or tables (below)")
    reps: int | Literal["auto"] = Field(3, description='repetitions per series, or "auto" '
                                        "(until ci_target, max_reps or max_seconds)")
    ci_target: float = Field(0.02, gt=0, lt=1, description='reps = "auto": stop when every '
                             "series' 95% CI half-width is at most this fraction of its median")
    min_reps: int = Field(6, ge=2, le=10_000,
                          description='reps = "auto": repetitions before the first check')
    max_reps: int = Field(30, ge=2, le=10_000,
                          description='reps = "auto" or budget: the most repetitions')
    max_seconds: float = Field(900, gt=0, description='reps = "auto": seconds per workload '
                                                      "at most")
    budget: float | None = Field(None, gt=0, description='seconds (or "10m", "1h") for the '
                                 "whole run: repetitions go on, with valid repeated looks, "
                                 "until every series has a verdict or the budget is spent")
    margin: float = Field(DEFAULT_MARGIN, gt=0, lt=1, description="relative performance "
                          "within ± this fraction of the baseline is equivalent")
    warmup: bool = Field(True, description="one unrecorded warm-up trial per series")
    fresh_guest: bool = Field(False, description="boot a new guest for every trial")
    seed: int = Field(1, description="seed of the trial order's shuffle")
    timeout: float | None = Field(None, gt=0, description="per-trial limit in seconds")
    baseline: str | None = Field(None, description="the baseline platform (unset: native or "
                                 "lab-native; with several hosts, each host's own)")
    host: str | list[str] = Field("local", description="where the platforms run: local, "
                                  "ssh://user@host, lab:kvm, lab:xen; several hosts run side "
                                  "by side, each platform on each (named PLATFORM@HOST)")
    host_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per host (as written in host): settings given "
        "to every platform on it whose kind takes them and that does not set them itself "
        "(an inventory's hvbench_* host variables land here)")
    forks: int = Field(10, ge=1, le=1000, description="hosts measured at once, at most "
                       "(this machine and its labs count as one)")
    lock_timeout: float | None = Field(None, gt=0, description="seconds to wait for a "
                                       "remote host's measurement lock, which another "
                                       "hvbench holds while it measures there (unset: as "
                                       "long as it takes)")
    ssh_identity: str | None = Field(None, description="a private key file for SSH hosts "
                                     "(no passwords, ever)")
    accept_new_host_key: bool = Field(False, description="trust an SSH host's key on first "
                                      "contact (off: it must be in known_hosts)")
    density: list[int] | None = Field(None, description="guest counts, e.g. [1, 2, 4]: "
                                      "every guest platform becomes one variant per count "
                                      "(its setting 'guests'), for a consolidation study")
    interference: InterferenceSpec | None = Field(
        None, description="an interference study: a victim workload measured with each "
        "aggressor beside it and without (its own section, below)")
    store: str | None = Field(None, description="where results go: a SQLite path or "
                              "postgresql://user@host/db (--store overrides it)")

    @field_serializer("store")
    def _store_masked(self, store: str | None, info: SerializationInfo) -> str | None:
        """As recorded with a run (``context={"record": True}``), a password in the URL
        is never kept."""
        return masked(store) if store and (info.context or {}).get("record") else store

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("reps")
    @classmethod
    def _reps_range(cls, reps: int | str) -> int | str:
        if isinstance(reps, int) and not 1 <= reps <= 10_000:
            raise ValueError("must be between 1 and 10000, or 'auto'")
        return reps

    @field_validator("host")
    @classmethod
    def _hosts(cls, host: str | list[str]) -> str | list[str]:
        hosts = [host] if isinstance(host, str) else list(dict.fromkeys(host))
        if not hosts:
            raise ValueError("give at least one host")
        for one in hosts:
            parsed_host(one)
        return hosts[0] if len(hosts) == 1 else hosts

    @model_validator(mode="after")
    def _matrix_variants(self) -> Campaign:
        """A platform with a matrix becomes its variants (before hosts multiply them);
        ``density`` is a matrix of 'guests' on every guest platform."""
        if self.density:
            self._density_matrices(self.density)
        expanded = []
        for spec in self.platforms:
            if not spec.matrix:
                expanded.append(spec)
                continue
            expanded.extend(spec.model_copy(update={
                "name": variant.name, "kind": spec.driver, "settings": variant.settings,
                "matrix": None, "family": spec.name, "levels": variant.levels})
                for variant in matrix_mod.expand(spec.name, spec.settings, spec.matrix))
        self.platforms = expanded
        return self

    @model_validator(mode="after")
    def _interference_conditions(self) -> Campaign:
        """An interference study: its victim is the only workload; every platform gets
        its conditions (specs.interference_variants)."""
        study = self.interference
        if study is None:
            return self
        if self.density:
            raise ValueError("interference and density are two studies: run them apart")
        if isinstance(self.host, list):
            raise ValueError("an interference study runs on one host at a time")
        if [w.model_dump() for w in self.workloads] != [study.victim.model_dump()]:
            raise ValueError("an interference study measures its victim only: drop "
                             "'workloads' and 'suite'")
        self.platforms = interference_variants(self.platforms, study)
        return self

    def _density_matrices(self, density: list[int]) -> None:
        if len(set(density)) != len(density) or min(density) < 1 or max(density) > 64:
            raise ValueError(f"density: distinct guest counts from 1 to 64, got {density}")
        guests = [spec for spec in self.platforms if spec.driver in PLATFORM_KINDS
                  and issubclass(PLATFORM_KINDS[spec.driver], GuestPlatform)]
        if guests and all("guests" in spec.settings for spec in guests):
            return  # expanded already (a campaign read back from its run, or re-checked)
        if not guests:
            raise ValueError("density needs a guest platform (qemu-tcg, qemu-kvm, libvirt, "
                             "...): native has no guests to add")
        self.platforms = [spec.model_copy(update={"matrix": {
            **(spec.matrix or {}), "guests": list(density)}})
            if spec in guests and "guests" not in spec.settings else spec
            for spec in self.platforms]

    @model_validator(mode="after")
    def _per_host_platforms(self) -> Campaign:
        """Several hosts: every platform without a host of its own runs on each; then
        each platform takes its host's settings (host_settings) it does not set."""
        if isinstance(self.host, list):
            expanded = []
            for spec in self.platforms:
                if spec.host is not None:
                    expanded.append(spec)
                    continue
                for host in self.host:
                    parsed = HostSpec.parse(host)
                    kind = spec.driver
                    if kind == "native" and parsed.kind == "lab":
                        kind = "lab-native"  # a lab's baseline is the lab host itself
                    name = spec.name if kind == spec.driver else kind
                    expanded.append(spec.model_copy(update={
                        "name": f"{name}@{parsed.tag}", "kind": kind, "host": host}))
            self.platforms = expanded
            self.host = "local" if "local" in self.host else self.host[0]
        if self.host_settings:
            self.platforms = [_with_host_settings(spec, self.host_settings.get(
                spec.host or str(self.host), {})) for spec in self.platforms]
        return self

    def host_of(self, spec: PlatformSpec) -> HostSpec:
        return HostSpec.parse(spec.host or str(self.host))

    @property
    def hosts(self) -> list[HostSpec]:
        """The distinct hosts of this campaign's platforms, in order."""
        return list(dict.fromkeys(self.host_of(spec) for spec in self.platforms))

    @property
    def payload_workloads(self) -> list[str]:
        """Every workload a guest may run: the measured ones and the aggressors."""
        aggressors = [a.workload for a in self.interference.neighbours
                      if a.workload != "none"] if self.interference else []
        return list(dict.fromkeys([w.name for w in self.workloads] + aggressors))

    @property
    def adaptive(self) -> bool:
        return self.reps == "auto" or self.budget is not None

    @property
    def look_plan(self) -> LookPlan:
        """When the analysis may look at each series, and at what level: a budgeted run
        looks at scheduled counts from the first that can conclude; any other run once."""
        if self.budget is not None:
            return LookPlan.budgeted(self.max_reps)
        return LookPlan.fixed(self.planned_reps)

    @property
    def planned_reps(self) -> int:
        """Repetitions in the plan: the maximum when adaptive."""
        return self.max_reps if self.adaptive else int(self.reps)

    def check(self) -> Campaign:
        """Cross-field checks pydantic cannot express: names exist, params valid."""
        if self.adaptive and self.min_reps > self.max_reps:
            raise UsageError(f"min_reps ({self.min_reps}) exceeds max_reps ({self.max_reps})")
        names = [p.name for p in self.platforms]
        if len(set(names)) != len(names):
            raise UsageError(f"platform names must be unique, got: {', '.join(names)}")
        for spec in self.platforms:
            if spec.driver not in PLATFORM_KINDS:
                raise UsageError(f"unknown platform {spec.driver!r}; choose from: "
                                 f"{', '.join(PLATFORM_KINDS)} (see 'hvbench list')")
        for workload in self.workloads:
            get_workload(workload.name).params(workload.params)
        if self.interference is not None:
            self.interference.check()
        for spec in self.platforms:  # every setting, before anything starts
            make_platform(spec.name, spec.driver, spec.settings)
        for spec in self.platforms:
            in_lab = self.host_of(spec).kind == "lab"
            if spec.driver == "lab-native" and not in_lab:
                raise UsageError(f"platform {spec.name} (lab-native) runs only in a lab: "
                                 "add --host lab:kvm")
            if spec.driver == "native" and in_lab:
                raise UsageError(f"platform {spec.name}: in a lab the baseline is the lab host "
                                 "itself; name it 'lab-native', not 'native'")
        settable = {name for d in PLATFORM_KINDS.values() if issubclass(d, GuestPlatform)
                    for name in d.settings_model.model_fields}
        for host, settings in self.host_settings.items():
            unknown = sorted(set(settings) - settable)
            if unknown:
                raise UsageError(f"host {host}: no platform kind has a setting "
                                 f"{unknown[0]!r} (settings: {', '.join(sorted(settable))})")
        if self.baseline and self.baseline not in names and ":" not in self.baseline:
            raise UsageError(f"baseline {self.baseline!r} is not one of the platforms "
                             f"({', '.join(names)})")
        return self


def _with_host_settings(spec: PlatformSpec, settings: dict[str, Any]) -> PlatformSpec:
    """The platform with its host's settings that its kind takes and it does not set."""
    driver = PLATFORM_KINDS.get(spec.driver)
    if not settings or driver is None or not issubclass(driver, GuestPlatform):
        return spec
    known = driver.settings_model.model_fields
    extra = {k: v for k, v in settings.items() if k in known and k not in spec.settings}
    return spec.model_copy(update={"settings": {**spec.settings, **extra}}) if extra else spec


def _pydantic_message(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")  # our own checks' words
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{source}: {where + ': ' if where else ''}{message}{more}"


def from_mapping(data: dict[str, Any], source: str = "campaign") -> Campaign:
    """Validate a campaign given as a dict (TOML or flags)."""
    data = dict(data)
    if "suite" in data:
        suite = data.pop("suite")
        data.setdefault("workloads", [])
        data["workloads"] = [{"name": e.workload, "params": e.params}
                             for e in get_suite(str(suite))] + list(data["workloads"])
    data["platforms"] = [{"name": p} if isinstance(p, str) else p
                         for p in data.get("platforms", [])]
    data["workloads"] = [{"name": w} if isinstance(w, str) else w
                         for w in data.get("workloads", [])]
    study = data.get("interference")
    if isinstance(study, dict) and not data["workloads"] and "victim" in study:
        victim = study["victim"]  # the study's victim is the campaign's workload
        data["workloads"] = [{"name": victim} if isinstance(victim, str) else victim]
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        raise UsageError(_pydantic_message(exc, source)) from None
    return campaign.check()


def from_toml(path: Path) -> Campaign:
    """Read a campaign file.

    ```toml
    platforms = ["native", {name = "tcg-2cpu", kind = "qemu-tcg", settings = {vcpus = 2}}]
    suite = "quick"                       # and/or:
    workloads = [{name = "fio-randread", params = {size = "128M"}}]
    reps = 5
    seed = 7
    ```
    """
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"campaign file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read campaign file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    return from_mapping(data, str(path))


def plan(campaign: Campaign) -> list[Trial]:
    """Ordered trials: warm-ups, then interleaved, seeded-shuffled repetitions."""
    rng = random.Random(campaign.seed)
    platforms = [p.name for p in campaign.platforms]
    trials: list[Trial] = []

    def add(platform: str, index: int, repetition: int, warmup: bool) -> None:
        spec = campaign.workloads[index]
        trials.append(Trial(len(trials), platform, spec.name, index, repetition, warmup,
                            spec.params))

    for index in range(len(campaign.workloads)):
        if campaign.warmup:
            for platform in platforms:
                add(platform, index, -1, True)
        for repetition in range(campaign.planned_reps):
            order = list(platforms)
            rng.shuffle(order)
            for platform in order:
                add(platform, index, repetition, False)
    return trials
