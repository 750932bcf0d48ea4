#!/usr/bin/env python3
"""Write the guide's reference pages from the code, so they cannot drift from it:
docs/reference/cli.md from the commands' own --help, docs/reference/campaign.md from
the campaign file's pydantic models (every key, its type, default and meaning), the
platform kinds' settings and the workloads' parameters.

    python scripts/docs_reference.py          # rewrite the pages
    python scripts/docs_reference.py --check  # exit 1 when a page is out of date
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hvbench.campaign import Campaign, PlatformSpec, WorkloadSpec
from hvbench.cli import cli
from hvbench.platforms import PLATFORM_KINDS
from hvbench.platforms.guest import GuestPlatform
from hvbench.workloads import CATALOGUE

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference"
WIDTH = 100
NOTICE = "<!-- written by scripts/docs_reference.py from the code: do not edit -->\n"


def _commands(command: click.Command, path: list[str], parent: click.Context | None
              ) -> list[tuple[str, str]]:
    """(full name, --help text) of a command and every subcommand, depth first."""
    context = click.Context(command, info_name=path[-1], parent=parent,
                            terminal_width=WIDTH, max_content_width=WIDTH)
    found = [(" ".join(path), command.get_help(context))]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                found += _commands(sub, [*path, name], context)
    return found


def cli_page() -> str:
    lines = [NOTICE, "# Command reference\n",
             "Every command and option, as `hvbench COMMAND --help` prints it. Exit codes: "
             "0 done, 1 a run finished with failed trials (or `compare` found a regression), "
             "2 a usage error (the message names the fix).\n"]
    for name, text in _commands(cli, ["hvbench"], None):
        lines += [f"## `{name}`\n", "```text", text.rstrip(), "```\n"]
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """A type as a reader writes it: int | "auto", list[int], str | None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(map(_type_name, args))}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _type(field: FieldInfo) -> str:
    return _type_name(field.annotation).replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        factory = field.default_factory
        return f"`{factory()}`" if factory is not None else "required"  # type: ignore[call-arg]
    value: Any = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f'`"{value}"`' if isinstance(value, str) else f"`{value}`"


def _table(model: type[BaseModel], described: bool = True) -> list[str]:
    rows = ["| key | type | default |" + (" meaning |" if described else ""),
            "|---|---|---|" + ("---|" if described else "")]
    for name, field in model.model_fields.items():
        row = f"| `{name}` | {_type(field)} | {_default(field)} |"
        if described:
            row += f" {(field.description or '').replace('|', '/')} |"
        rows.append(row)
    return [*rows, ""]


def campaign_page() -> str:
    lines = [NOTICE, "# Campaign file reference\n",
             "A campaign is a TOML file (`hvbench run campaign.toml`); every key below, "
             "with its type and default, is read from the code itself. Unknown keys are "
             "refused with the list of known ones.\n",
             "## Top level\n", *_table(Campaign),
             "## A platform (`platforms = [...]`)\n",
             "A name alone (`\"native\"`) or a table:\n", *_table(PlatformSpec),
             "## A workload (`workloads = [...]`)\n",
             "A name alone (`\"fio-randread\"`) or a table:\n", *_table(WorkloadSpec),
             "## Platform settings by kind\n",
             "`settings = {...}` of a platform; the [platforms page](../platforms.md) "
             "explains them.\n"]
    seen: dict[type[BaseModel], list[str]] = {}
    for kind, driver in PLATFORM_KINDS.items():
        if issubclass(driver, GuestPlatform):
            seen.setdefault(driver.settings_model, []).append(kind)
    for model, kinds in seen.items():
        lines += [f"### {', '.join(f'`{k}`' for k in kinds)}\n", *_table(model)]
    others = [k for k, d in PLATFORM_KINDS.items() if not issubclass(d, GuestPlatform)]
    lines += [f"{', '.join(f'`{k}`' for k in others)}: no settings.\n",
              "## Workload parameters\n",
              "`params = {...}` of a workload, or `--param WORKLOAD.KEY=VALUE`; the "
              "[workloads page](../workloads.md) explains each workload.\n"]
    for name, workload in sorted(CATALOGUE.items()):
        lines.append(f"### `{name}`\n")
        lines += (_table(workload.params_model, described=False)
                  if workload.params_model.model_fields else ["No parameters.\n"])
    return "\n".join(lines)


PAGES = {"cli.md": cli_page, "campaign.md": campaign_page}


def main(argv: list[str]) -> int:
    stale = []
    for name, make in PAGES.items():
        path, text = DOCS / name, make().rstrip("\n") + "\n"
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            DOCS.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{path} is out of date: run python scripts/docs_reference.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
