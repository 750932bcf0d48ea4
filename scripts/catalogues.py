#!/usr/bin/env python3
"""Update the report's message catalogues (src/hvbench/report/locale/*/LC_MESSAGES):
new messages are added untranslated, unused ones dropped, translations kept. Prints
what is left to translate; `make test` fails until nothing is."""

from __future__ import annotations

import sys

from hvbench.report.catalogue import update
from hvbench.report.i18n import LANGUAGES


def main() -> int:
    left = 0
    for code in LANGUAGES:
        if code == "en":  # the source language
            continue
        lacking = update(code)
        left += len(lacking)
        for message in lacking:
            print(f"{code}: untranslated: {message}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
