#!/usr/bin/env python3
"""The guide's pictures, made from a real stored run so they stay true: the HTML
report's first screen (Chromium), and the study's first pages in English and Chinese
(printed by Chromium, rendered by poppler's pdftoppm).

    python scripts/screenshots.py [RUN]    # default: the latest run of the default store
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from hvbench.analysis import analyse
from hvbench.report import chromium, html, study
from hvbench.store import Store
from hvbench.storeurl import configured

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
#: (language, first page, last page) of the study shown in the guide
STUDY_PAGES = (("en", 3, 4), ("zh", 3, 4))


def main(argv: list[str]) -> int:
    store = Store(configured(None))
    analysis = analyse(store, store.resolve(argv[0] if argv else "latest"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    chromium.screenshot(html.render(analysis), IMAGES / "report.png", 1280, 1500)
    with tempfile.TemporaryDirectory(prefix="hvbench-shots-") as work:
        for lang, first, last in STUDY_PAGES:
            pdf = Path(work) / f"study-{lang}.pdf"
            chromium.print_pdf(study.render(analysis, lang), pdf)
            subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", str(first), "-l", str(last),
                            str(pdf), str(IMAGES / f"study-{lang}")], check=True, timeout=120)
    for path in sorted(IMAGES.glob("*.png")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
