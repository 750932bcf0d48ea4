"""The HTML report: one self-contained, offline file (inline SVG, inline CSS, no URLs).

Everything from the store or a guest is autoescaped by Jinja2; a
Content-Security-Policy forbids any fetch, so even a mistake cannot phone home.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from matplotlib.figure import Figure

from .. import __version__
from ..analysis import Analysis
from . import charts, narrative
from .i18n import Language, language
from .term import number

_HOST_KEYS = ("hostname", "cpu_model", "cpu_logical", "cpu_mhz", "memory_bytes", "kernel",
              "distro", "virtualization", "governor", "turbo", "clocksource", "loadavg",
              "cpu_flags_notable", "fingerprint", "hvbench_version")
#: machine-info keys shown verbatim (command lines, guest configs)
_BLOCKS = {"qemu_command": "QEMU command line", "xl_cfg": "xl.cfg", "domain_xml": "domain XML"}


def environment(t: Language) -> Environment:
    """The templates' environment, speaking ``t``'s language (the study's too)."""
    found = Environment(loader=PackageLoader("hvbench.report", "templates"),
                        autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                        lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
    found.install_gettext_translations(t.translations)  # type: ignore[attr-defined]
    found.filters["fmt"] = number
    return found


def config_blocks(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, text) of each guest configuration recorded verbatim."""
    machine = info.get("machine", {})
    found = []
    for key, title in _BLOCKS.items():
        value = machine.get(key)
        if value:
            found.append((title, value if isinstance(value, str) else json.dumps(value)))
    return found


def svg(figure: Figure | None) -> Markup | None:
    """A chart inline, as trusted markup (matplotlib's own SVG), or None without one."""
    return Markup(charts.to_svg(figure)) if figure is not None else None  # noqa: S704


def render(analysis: Analysis, lang: str = "en") -> str:
    t = language(lang)
    categories = sorted({c for s in analysis.category_scores.values() for c in s})
    template = environment(t).get_template("report.html.j2")
    return template.render(
        a=analysis, lang=lang,
        others=analysis.compared(),
        categories=categories,
        overview_svg=svg(charts.overview(analysis)),
        workload_svgs={w: svg(charts.workload_figure(analysis, w)) for w in analysis.workloads()},
        where_svg=svg(charts.where_figure(analysis)),
        fleet_svg=svg(charts.fleet_figure(analysis.fleet)),
        consolidation_svg=svg(charts.consolidation_figure(analysis.consolidation)),
        interference_svg=svg(charts.interference_figure(analysis.interference)),
        effect_svgs={f.family: svg(charts.effects_figure(f)) if f.factorial else None
                     for f in analysis.effects},
        host_rows=[(k, analysis.run.host.get(k)) for k in _HOST_KEYS
                   if analysis.run.host.get(k) is not None],
        platform_blocks={p: config_blocks(i) for p, i in analysis.platform_info.items()},
        fmt=number,
        overall_clause=lambda score, baseline, count: narrative.overall_clause(
            t, score, baseline, count),
        wording=lambda comparison: narrative.verdict_text(t, comparison),
        category_name=lambda category: narrative.category_name(t, category),
        version=__version__,
    )


def write(analysis: Analysis, path: Path, lang: str = "en") -> None:
    path.write_text(render(analysis, lang), encoding="utf-8")
