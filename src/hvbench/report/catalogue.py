"""The message catalogues' upkeep: every message the reports can say, as extracted
from the code and templates (Babel's extractors), what a catalogue still lacks, and
an update that adds new messages while keeping every translation.

``python scripts/catalogues.py`` updates the catalogues; a test fails while any
message of any language lacks its translation.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from ..workloads import CATALOGUE
from .i18n import DOMAIN, LANGUAGES, catalogue_path

HERE = Path(__file__).parent
#: the modules whose _(), n_() and N_() messages are shown to readers
PYTHON_SOURCES = ("narrative.py", "study.py", "html.py")
TEMPLATES = ("templates/study.html.j2", "templates/report.html.j2",
             "templates/many_guests.html.j2")
KEYWORDS = {"_": None, "N_": None, "n_": (1, 2)}


def messages() -> dict[str, list[str]]:
    """msgid -> where it is used (plural forms are keyed by their singular)."""
    found: dict[str, list[str]] = {}

    def add(message: str | tuple[str, ...], where: str) -> None:
        key = message if isinstance(message, str) else message[0]
        found.setdefault(key, []).append(where)

    for name in PYTHON_SOURCES:
        for line, message, _comments, _context in extract_from_file(
                "python", HERE / name, keywords=KEYWORDS):
            add(message, f"{name}:{line}")
    for name in TEMPLATES:  # Jinja2's extractor, registered with Babel by Jinja2
        for line, message, _comments, _context in extract_from_file(
                "jinja2", HERE / name, keywords=KEYWORDS,
                options={"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                         "lstrip_blocks": "true"}):
            add(message, f"{name}:{line}")
    for workload in CATALOGUE.values():  # the study's method section translates these
        add(workload.description, f"workload {workload.name}")
    return found


def _read(code: str) -> Catalog:
    path = catalogue_path(code)
    if not path.exists():
        return Catalog(locale=LANGUAGES[code], domain=DOMAIN)
    with path.open("rb") as source:
        return read_po(source, locale=LANGUAGES[code], domain=DOMAIN)


def missing(code: str) -> list[str]:
    """The messages a language's catalogue does not translate (or marks fuzzy)."""
    catalogue = _read(code)
    lacking = []
    for message in messages():
        entry = catalogue.get(message)
        if entry is None or entry.fuzzy or not entry.string:
            lacking.append(message)
    return lacking


def update(code: str) -> list[str]:
    """Add new messages to a language's catalogue, drop unused ones, keep every
    translation; returns the messages still to translate."""
    old = _read(code)
    new = Catalog(locale=LANGUAGES[code], domain=DOMAIN, project="hvbench", fuzzy=False,
                  creation_date=old.creation_date, revision_date=old.revision_date,
                  header_comment=f"# hvbench's {code} messages (scripts/catalogues.py updates)")
    for message, where in messages().items():
        previous = old.get(message)
        new.add(message, previous.string if previous else "",
                locations=[(w.split(":")[0], int(w.split(":")[1])) if ":" in w else (w, 0)
                           for w in where],
                flags=previous.flags if previous else ())
    path = catalogue_path(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as target:
        write_po(target, new, width=100, sort_output=False)
    return missing(code)
