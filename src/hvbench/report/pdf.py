"""HTML to PDF with headless Chromium's print-to-PDF: the engine the tests already
render the HTML report in, so the PDF shows what the HTML shows. Chromium embeds the
fonts it used (Noto CJK for Chinese, from Debian's fonts-noto-cjk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import TrialError, UsageError
from ..localproc import Warden, local_which, run_local

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: no request may leave the machine while printing (the page itself makes none: its
#: Content-Security-Policy forbids it); these stop Chromium's own service traffic
QUIET = ("--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-pings", "--disable-domain-reliability",
         "--disable-client-side-phishing-detection", "--proxy-server=127.0.0.1:9",
         "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,"
         "Translate,AutofillServerCommunication")


def browser() -> str:
    for name in BROWSERS:
        found = local_which(name)
        if found:
            return found
    raise UsageError("writing a PDF needs Chromium: install Debian's 'chromium' package "
                     "('make setup' does), or write the study as .html")


def print_pdf(html: str, target: Path, timeout: float = 180) -> None:
    """Print a self-contained HTML page to ``target`` as a PDF."""
    program = browser()
    work = Warden.make_dir("hvbench-pdf-")
    try:
        page, printed = work / "study.html", work / "study.pdf"
        page.write_text(html, encoding="utf-8")
        argv = [program, "--headless", "--disable-gpu", *QUIET, "--no-pdf-header-footer",
                f"--user-data-dir={work / 'profile'}", f"--print-to-pdf={printed}",
                page.as_uri()]
        if os.geteuid() == 0:  # Chromium refuses to run as root inside its sandbox
            argv.insert(1, "--no-sandbox")
        try:
            done = run_local(argv, timeout)
        except TrialError as exc:
            raise UsageError(f"Chromium could not print the PDF: {exc}") from None
        if not printed.exists() or printed.read_bytes()[:5] != b"%PDF-":
            said = (done.stderr or done.stdout).strip().splitlines()
            raise UsageError("Chromium did not print the PDF"
                             + (f": {said[-1][:200]}" if said else ""))
        try:
            shutil.copyfile(printed, target)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        Warden.remove_dir(work)
