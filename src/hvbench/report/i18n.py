"""The languages reports are written in: wording from gettext catalogues, numbers and
dates formatted per locale (Babel).

The catalogues are ``locale/<lang>/LC_MESSAGES/hvbench.po`` beside this module; English
is the source language (its msgids), so English needs no catalogue. They are read from
the ``.po`` source when first used (compiled in memory), so there is no build step and
no compiled file that could drift from its source.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from ..errors import UsageError

DOMAIN = "hvbench"
LOCALE_DIR = Path(__file__).parent / "locale"
#: language code -> the Babel locale its numbers and dates follow
LANGUAGES = {"en": "en_US", "zh": "zh_Hans_CN"}


def catalogue_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@dataclass(frozen=True)
class Language:
    """One language: ``_`` translates an English message, the rest format values."""

    code: str
    translations: gettext.NullTranslations
    locale: Locale

    def _(self, message: str) -> str:
        return self.translations.gettext(message)

    def n_(self, singular: str, plural: str, count: int) -> str:
        return self.translations.ngettext(singular, plural, count)

    def number(self, value: float, digits: int = 2) -> str:
        """A decimal with at most ``digits`` decimals (``1,234.5``)."""
        pattern = "#,##0" + ("." + "#" * digits if digits else "")
        return numbers.format_decimal(value, format=pattern, locale=self.locale)

    def fixed(self, value: float, digits: int = 2) -> str:
        """A decimal with exactly ``digits`` decimals (``0.91``): scores and ratios."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return numbers.format_decimal(value, format=pattern, locale=self.locale)

    def percent(self, value: float, digits: int = 1) -> str:
        """A percentage given in percent (``12.3%``)."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return numbers.format_percent(value / 100, format=pattern, locale=self.locale)

    def integer(self, value: int) -> str:
        return numbers.format_decimal(value, format="#,##0", locale=self.locale)

    def datetime(self, value: dt.datetime) -> str:
        return dates.format_datetime(value, format="medium", locale=self.locale)


@cache
def _translations(code: str) -> gettext.NullTranslations:
    if code == "en":
        return gettext.NullTranslations()
    with catalogue_path(code).open("rb") as source:
        catalogue = read_po(source, locale=LANGUAGES[code], domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)  # fuzzy entries are left out: they fall back to English
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def language(code: str) -> Language:
    """The language for a ``--lang`` value; an unknown one is a usage error."""
    if code not in LANGUAGES:
        raise UsageError(f"unknown language {code!r} (languages: {', '.join(LANGUAGES)})")
    return Language(code, _translations(code), Locale.parse(LANGUAGES[code]))
