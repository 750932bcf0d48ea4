"""The study: one run (and its baseline run, if any) written up as the document people
otherwise write by hand: test environment, method, results by category with charts
and a narrative, why (the mechanism), conclusions and threats to validity.

HTML (self-contained, like the report) or PDF (that HTML printed by headless
Chromium), in any language of i18n.py. Everything from the store is escaped by
Jinja2; every sentence comes from narrative.py or the template, both translated
through the catalogues.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from .. import __version__
from ..analysis import Analysis
from ..platforms import PLATFORM_KINDS
from ..platforms.guest import GuestPlatform
from ..stats import Comparison
from ..verdicts import ALPHA, LookPlan
from ..workloads import CATALOGUE
from . import charts, chromium, narrative
from .html import config_blocks, environment, svg
from .i18n import Language, language
from .narrative import N_

VERDICT_WORDS = {"slower": N_("slower"), "faster": N_("faster"),
                 "equivalent": N_("equivalent"), "inconclusive": N_("inconclusive")}
#: host facts shown in the environment table, in this order
HOST_FACTS = (("cpu_model", N_("CPU model")), ("cpu_logical", N_("logical CPUs")),
              ("memory_bytes", N_("memory")), ("kernel", N_("kernel")),
              ("distro", N_("distribution")), ("virtualization", N_("runs on")),
              ("clocksource", N_("clock source")), ("firmware", N_("firmware / board")),
              ("cpu_flags_notable", N_("notable CPU flags")))


@dataclass(frozen=True)
class Guest:
    """One platform's configuration, as the environment table shows it."""

    platform: str
    kind: str
    host: str
    engine: str
    version: str
    vcpus: str
    memory: str
    disk: str
    network: str
    settings: str


@dataclass(frozen=True)
class Section:
    """One results section: a category's chart, narrative and table."""

    category: str
    title: str
    platforms: list[str]  # those compared in this category: the table's columns
    mechanism: str
    chart: Markup | None
    sentences: list[str]
    rows: list[tuple[str, str, list[str]]]  # (workload, metric (unit), a cell per platform)


def _hosts(analysis: Analysis, t: Language) -> list[tuple[str, list[tuple[str, str]]]]:
    host = analysis.run.host
    per_host = host.get("hosts") or {host.get("host", "local"): host}
    found = []
    for label, facts in per_host.items():
        rows = []
        for key, title in HOST_FACTS:
            value: Any = facts.get(key)
            if key == "firmware":
                dmi = facts.get("dmi") or {}
                value = " ".join(str(v) for v in (dmi.get("sys_vendor"), dmi.get("product_name"))
                                 if v) or None
            elif key == "memory_bytes" and value:
                value = f"{t.number(value / 2**30, 1)} GiB"
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            if value not in (None, ""):
                rows.append((t._(title), str(value)))
        found.append((f"{label} ({facts.get('hostname', '?')})", rows))
    return found


def _xen_version(xl_info: str) -> str:
    found = re.search(r"^xen_version\s*:\s*(\S+)", xl_info or "", re.MULTILINE)
    return f"Xen {found.group(1)}" if found else "Xen"


def _guest(t: Language, name: str, spec: dict[str, Any], info: dict[str, Any]) -> Guest:
    machine = info.get("machine", {})
    kind = spec.get("kind") or spec.get("name") or "?"  # a name alone is its kind
    driver = PLATFORM_KINDS.get(kind)
    vcpus = memory = "—"
    if driver is not None and issubclass(driver, GuestPlatform):  # effective settings
        settings = driver.settings_model(**spec.get("settings", {}))
        vcpus, memory = str(settings.vcpus), f"{settings.memory_mib} MiB"
    if machine.get("accelerator"):
        engine = {"kvm": "QEMU + KVM", "tcg": "QEMU TCG"}.get(machine["accelerator"],
                                                            str(machine["accelerator"]))
        version = machine.get("qemu_version") or "—"
    elif machine.get("hypervisor") == "xen":
        engine, version = f"Xen {machine.get('guest_type', '').upper()}", \
            _xen_version(machine.get("xl_info", ""))
    elif "libvirt" in machine:
        engine = "libvirt"
        version = f"{machine.get('hypervisor', '')}, libvirt {machine['libvirt']}"
    else:
        engine, version = t._("none (bare metal)"), "—"
    disk = machine.get("disk") or {}
    return Guest(
        platform=name, kind=kind, host=str(machine.get("host") or spec.get("host") or "local"),
        engine=engine, version=version, vcpus=vcpus, memory=memory,
        disk=", ".join(f"{k} {v}" for k, v in disk.items()) if isinstance(disk, dict)
        else str(disk) or "—",
        network=str(machine.get("network") or "—"),
        settings=", ".join(f"{k}={json.dumps(v)}" for k, v in spec.get("settings", {}).items())
        or t._("defaults"))


def _workloads(analysis: Analysis, t: Language) -> list[tuple[str, str, str, str, str, str]]:
    found = []
    sizes: dict[str, set[int]] = {}
    for row in analysis.rows:
        sizes.setdefault(row.workload, set()).update(len(v) for v in row.values.values())
    for entry in analysis.run.campaign.get("workloads", []):
        spec = CATALOGUE.get(entry["name"])
        if spec is None or entry["name"] not in sizes:
            continue
        params = ", ".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
        n = sorted(sizes[entry["name"]])
        samples = t.integer(n[0]) if len(n) == 1 else f"{t.integer(n[0])}–{t.integer(n[-1])}"
        category = str(spec.category)
        found.append((entry["name"], narrative.category_name(t, category),
                      t._(spec.description),
                      t._(narrative.CATEGORY_STAKES.get(category,
                                                        narrative.CATEGORY_STAKES["other"])),
                      params or t._("defaults"), samples))
    return found


def _initial(text: str) -> str:
    """Upper-case first letter ('CPU' stays 'CPU'; str.capitalize would make 'Cpu')."""
    return text[:1].upper() + text[1:]


def _cell(t: Language, comparison: Comparison) -> str:
    """'0.912 [0.901–0.925] ▼ slower' (no interval where the samples cannot give one)."""
    low, high = comparison.performance_ci
    verdict = comparison.verdict
    interval = f"{t.fixed(low, 3)}–{t.fixed(high, 3)}" if comparison.reachable else "—"
    return (f"{t.fixed(comparison.performance, 3)} [{interval}] "
            f"{verdict.mark} {t._(VERDICT_WORDS[verdict.kind])}")


def _sections(analysis: Analysis, t: Language) -> list[Section]:
    found = []
    against = t._("relative performance vs the baseline (> 1 is better)")
    for category in narrative.categories(analysis):
        rows = [r for r in analysis.rows if r.category == category and r.comparisons]
        platforms = [p for p in analysis.compared() if any(p in r.comparisons for r in rows)]
        figure = charts.relative_figure(analysis, rows, against) if rows else None
        table = [(r.workload, f"{r.metric} ({r.unit})",
                  [_cell(t, r.comparisons[p]) if p in r.comparisons else "—"
                   for p in platforms]) for r in rows]
        found.append(Section(
            category, _initial(narrative.category_name(t, category)), platforms,
            t._(narrative.CATEGORY_MECHANISMS.get(category,
                                                  narrative.CATEGORY_MECHANISMS["other"])),
            svg(figure),
            narrative.category_paragraph(t, analysis, category), table))
    return found


def _method(analysis: Analysis, t: Language) -> dict[str, str]:
    campaign = analysis.run.campaign
    margin = narrative.margin_of(analysis)
    n = max((len(v) for row in analysis.rows for v in row.values.values()), default=0)
    plan = LookPlan.of_campaign(campaign, n)
    if campaign.get("budget"):
        repetitions = t._("a time budget of {minutes} minutes: each series was looked at "
                          "after {looks} samples and stopped once decided").format(
            minutes=t.number(float(campaign["budget"]) / 60, 1),
            looks=", ".join(t.integer(x) for x in plan.looks))
    else:
        repetitions = t._("{reps} repetitions per series").format(
            reps=t.integer(int(campaign.get("reps") or n)))
    return {"repetitions": repetitions,
            "warmup": t._("one warm-up trial per series, not counted") if campaign.get("warmup")
            else t._("no warm-up trial"),
            "alpha": t.percent(ALPHA * 100, 0), "margin": t.percent(margin * 100, 0),
            "looks": t.integer(len(plan.looks))}


def _why(analysis: Analysis, t: Language) -> dict[str, Any]:
    probes = [(w.platform, w.operation, _cell(t, w.comparison)) for w in analysis.why]
    splits = [s for s in (narrative.where_sentence(t, split) for split in analysis.where) if s]
    costs = [(c.platform, c.exit, c.handled_by, t.number(c.summary.median, 0))
             for c in analysis.exit_costs]
    return {"probes": probes, "where": splits, "exit_costs": costs,
            "mechanisms": [(_initial(narrative.category_name(t, c)),
                            t._(narrative.CATEGORY_MECHANISMS[c]))
                           for c in narrative.categories(analysis)
                           if c in narrative.CATEGORY_MECHANISMS]}


def render(analysis: Analysis, lang: str = "en") -> str:
    t = language(lang)
    specs = {p["name"]: p for p in analysis.run.campaign.get("platforms", [])}
    with charts.fonts_for_text():
        sections = _sections(analysis, t)
        consolidation = svg(charts.consolidation_figure(analysis.consolidation))
        interference = svg(charts.interference_figure(analysis.interference))
    created = dt.datetime.fromisoformat(str(analysis.run.created))
    overall = [s for p in analysis.compared() if "overall" in analysis.scores.get(p, {})
               for s in (narrative.score_sentence(t, analysis, p, "overall"),
                         narrative.counts_sentence(t, analysis, p, None))]
    return environment(t).get_template("study.html.j2").render(
        t=t, lang=lang, a=analysis, run=analysis.run, created=t.datetime(created),
        compared=analysis.compared(), baselines=sorted(set(analysis.baseline_of.values())
                                                        or {analysis.baseline or ""}),
        hosts=_hosts(analysis, t),
        guests=[_guest(t, p, specs.get(p, {}), analysis.platform_info.get(p, {}))
                for p in analysis.platforms],
        blocks=[(p, title, text) for p, info in analysis.platform_info.items()
                for title, text in config_blocks(info)],
        workloads=_workloads(analysis, t), method=_method(analysis, t),
        sections=sections, why=_why(analysis, t), overall=overall,
        threats=narrative.threats(t, analysis), warnings=analysis.warnings,
        failures=[f for f in analysis.failures if not f.get("warmup")],
        consolidation_svg=consolidation, interference_svg=interference,
        wording=lambda comparison: narrative.verdict_text(t, comparison),
        version=__version__)


def write(analysis: Analysis, path: Path, lang: str = "en") -> None:
    """The study as HTML, or as PDF when ``path`` ends in .pdf."""
    page = render(analysis, lang)
    if path.suffix.lower() == ".pdf":
        chromium.print_pdf(page, path)
    else:
        path.write_text(page, encoding="utf-8")


def headings(lang: str = "en") -> Iterator[str]:
    """The section headings every study has (the tests look for them in the PDF)."""
    t = language(lang)
    for heading in (N_("1. Test environment"), N_("2. Method"), N_("3. Results"),
                    N_("4. Why"), N_("5. Conclusions and threats to validity")):
        yield t._(heading)
