"""Kernel modules for the guest, with their dependencies in load order.

Debian's kernel package ships no modules.dep, so dependencies come from each
module's own ``.modinfo`` section (``depends=a,b``), read with pyelftools.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile

from ..errors import HvbenchError


def _normal(name: str) -> str:
    return name.replace("-", "_")


def index(modules_dir: Path) -> dict[str, Path]:
    """Module name (underscores) -> .ko path, for every module under ``modules_dir``."""
    found = {}
    for path in modules_dir.rglob("*.ko"):
        found[_normal(path.name[:-3])] = path
    return found


def modinfo(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        section = ELFFile(handle).get_section_by_name(".modinfo")
        data = section.data() if section is not None else b""
    info = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info


def builtin(modules_dir: Path) -> set[str]:
    """Names built into the kernel (need no loading)."""
    listing = modules_dir / "modules.builtin"
    if not listing.exists():
        return set()
    return {_normal(Path(line.strip()).name.removesuffix(".ko"))
            for line in listing.read_text().splitlines() if line.strip()}


def resolve(modules_dir: Path, wanted: list[str],
            available: dict[str, Path] | None = None) -> list[Path]:
    """``wanted`` and their dependencies, dependencies first; built-ins are skipped."""
    available = available if available is not None else index(modules_dir)
    inside = builtin(modules_dir)
    ordered: list[Path] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        name = _normal(name)
        if name in done or name in inside:
            return
        if name in visiting:
            raise HvbenchError(f"kernel module dependency cycle at {name}")
        if name not in available:
            raise HvbenchError(f"kernel module {name} is not in {modules_dir} and not "
                               "built in: this kernel cannot run the hvbench guest")
        visiting.add(name)
        for dependency in filter(None, modinfo(available[name]).get("depends", "").split(",")):
            visit(dependency)
        visiting.discard(name)
        done.add(name)
        ordered.append(available[name])

    for module in wanted:
        visit(module)
    return ordered
