"""Ansible inventories as a run's host list: the YAML and INI formats (groups,
children, group and host variables), ``--limit`` patterns, and what each host becomes.

Read: ``ansible_host``, ``ansible_user``, ``ansible_port``,
``ansible_ssh_private_key_file`` (or ``ansible_private_key_file``; a relative path is
taken from the inventory's directory) and ``ansible_connection: local``. hvbench's own
host variables carry an ``hvbench_`` prefix: ``hvbench_lock`` (the measurement lock's
path on that host) and any platform setting (``hvbench_bridge: br0`` gives that host's
guests ``bridge = "br0"``). Variables apply from the widest group to the narrowest, then
the host's own, as Ansible applies them.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError
from .hosts.spec import ssh_url

PREFIX = "hvbench_"


@dataclass
class _Group:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InventoryHost:
    name: str
    variables: dict[str, Any]

    def url(self, base: Path) -> str:
        """The host as a run names it (``local``, or an ssh:// URL with its key, lock
        and name)."""
        if self.variables.get("ansible_connection") == "local":
            return "local"
        key = (self.variables.get("ansible_ssh_private_key_file")
               or self.variables.get("ansible_private_key_file"))
        if key:
            key = str((base / Path(str(key)).expanduser()).resolve())
        try:
            port = int(self.variables.get("ansible_port", 22))
        except (TypeError, ValueError):
            raise UsageError(f"inventory host {self.name}: ansible_port is not a number") \
                from None
        return ssh_url(self.variables.get("ansible_user"),
                       str(self.variables.get("ansible_host", self.name)), port, key,
                       self.variables.get(PREFIX + "lock"), self.name)

    @property
    def settings(self) -> dict[str, Any]:
        """Its hvbench_ variables that are platform settings."""
        return {k[len(PREFIX):]: v for k, v in self.variables.items()
                if k.startswith(PREFIX) and k != PREFIX + "lock"}


class Inventory:
    def __init__(self, path: Path):
        self.path = path
        self.groups: dict[str, _Group] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--inventory {path}: {exc.strerror}") from None
        if path.suffix in (".yml", ".yaml") or text.lstrip().startswith(("---", "all:")):
            self._read_yaml(text)
        else:
            self._read_ini(text)
        self._check_cycles()

    # -- reading ---------------------------------------------------------------
    def _host(self, name: str, variables: dict[str, Any] | None) -> None:
        if "[" in name:
            raise UsageError(f"inventory {self.path}: host ranges such as {name!r} are not "
                             "read: list the hosts one by one")
        self.host_vars.setdefault(name, {}).update(variables or {})

    def _read_yaml(self, text: str) -> None:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"inventory {self.path} is not valid YAML: "
                             f"{str(exc).splitlines()[0]}") from None
        if not isinstance(document, dict):
            raise UsageError(f"inventory {self.path}: expected groups at the top (all: ...)")
        for name, body in document.items():
            self._yaml_group(str(name), body)

    def _yaml_group(self, name: str, body: Any) -> None:
        group = self.groups.setdefault(name, _Group())
        if body is None:
            return
        if not isinstance(body, dict) or set(body) - {"hosts", "children", "vars"}:
            raise UsageError(f"inventory {self.path}: group {name!r} takes hosts, children "
                             "and vars")
        for host, variables in (body.get("hosts") or {}).items():
            self._host(str(host), variables)
            group.hosts.append(str(host))
        group.variables.update(body.get("vars") or {})
        for child, child_body in (body.get("children") or {}).items():
            group.children.append(str(child))
            self._yaml_group(str(child), child_body)

    def _read_ini(self, text: str) -> None:
        section, kind = "ungrouped", "hosts"
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                match = re.fullmatch(r"\[([\w.-]+)(?::(vars|children))?\]", line)
                if not match:
                    raise UsageError(f"inventory {self.path}:{number}: not a section: {line}")
                section, kind = match.group(1), match.group(2) or "hosts"
                self.groups.setdefault(section, _Group())
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                raise UsageError(f"inventory {self.path}:{number}: {exc}") from None
            group = self.groups.setdefault(section, _Group())
            if kind == "children":
                group.children.append(words[0])
                self.groups.setdefault(words[0], _Group())
            elif kind == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    raise UsageError(f"inventory {self.path}:{number}: expected KEY=VALUE")
                group.variables[key.strip()] = _ini_value(value.strip())
            else:
                pairs = {}
                for word in words[1:]:
                    key, sep, value = word.partition("=")
                    if not sep:
                        raise UsageError(f"inventory {self.path}:{number}: expected "
                                         f"KEY=VALUE after the host name, got {word!r}")
                    pairs[key] = _ini_value(value)
                self._host(words[0], pairs)
                group.hosts.append(words[0])

    def _check_cycles(self) -> None:
        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise UsageError(f"inventory {self.path}: group {name!r} contains itself "
                                 f"({' > '.join((*path, name))})")
            for child in self.groups.get(name, _Group()).children:
                visit(child, (*path, name))
        for name in self.groups:
            visit(name, ())

    # -- what it says ----------------------------------------------------------
    def members(self, group: str) -> list[str]:
        """A group's hosts, its children's included, in the inventory's order."""
        found = list(self.groups[group].hosts)
        for child in self.groups[group].children:
            found += self.members(child)
        return list(dict.fromkeys(found))

    def _depths(self) -> dict[str, int]:
        """Each group's depth below the roots (all: 0): wider groups apply first."""
        depth: dict[str, int] = {}

        def walk(name: str, level: int) -> None:
            if depth.get(name, -1) < level:
                depth[name] = level
                for child in self.groups[name].children:
                    walk(child, level + 1)
        children = {c for g in self.groups.values() for c in g.children}
        for root in self.groups:
            if root not in children:
                walk(root, 1 if root != "all" else 0)
        return depth

    def host(self, name: str) -> InventoryHost:
        depth = self._depths()
        variables: dict[str, Any] = dict(self.groups["all"].variables) \
            if "all" in self.groups else {}
        for group in sorted((g for g in self.groups if name in self.members(g)),
                            key=lambda g: (depth.get(g, 0), g)):
            variables.update(self.groups[group].variables)
        variables.update(self.host_vars[name])
        return InventoryHost(name, variables)

    def select(self, pattern: str | None) -> list[InventoryHost]:
        """The hosts a --limit pattern names (Ansible's: groups or host globs, joined by
        ':' or ',', '!' excludes, '&' intersects; ~REGEX matches names); all without."""
        everyone = list(self.host_vars)
        chosen: list[str] = [] if pattern else everyone
        for term in filter(None, re.split(r"[:,]", pattern or "")):
            exclude, intersect = term.startswith("!"), term.startswith("&")
            matched = self._matching(term.lstrip("!&"), everyone)
            if not matched:
                raise UsageError(f"--limit {pattern!r}: {term.lstrip('!&')!r} names no group "
                                 f"or host of {self.path} (groups: "
                                 f"{', '.join(sorted(self.groups)) or 'none'})")
            if exclude:
                chosen = [h for h in chosen if h not in matched]
            elif intersect:
                chosen = [h for h in chosen if h in matched]
            else:
                chosen += [h for h in matched if h not in chosen]
        if not chosen:
            raise UsageError(f"--limit {pattern!r} leaves no host of {self.path}")
        return [self.host(h) for h in everyone if h in chosen]

    def _matching(self, word: str, everyone: list[str]) -> list[str]:
        if word in self.groups:
            return self.members(word)
        if word.startswith("~"):
            try:
                expression = re.compile(word[1:])
            except re.error as exc:
                raise UsageError(f"--limit: {word!r} is not a regular expression ({exc})") \
                    from None
            return [h for h in everyone if expression.search(h)]
        return [h for h in everyone if fnmatch.fnmatchcase(h, word)]


def _ini_value(text: str) -> Any:
    """An INI value as Ansible reads it: quotes removed, numbers and booleans typed."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def hosts_for_run(path: Path, pattern: str | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The run's hosts from an inventory (each as its URL) and their platform settings."""
    inventory = Inventory(path)
    base = path.resolve().parent
    hosts, settings = [], {}
    for host in inventory.select(pattern):
        url = host.url(base)
        hosts.append(url)
        if host.settings:
            settings[url] = host.settings
    return hosts, settings
