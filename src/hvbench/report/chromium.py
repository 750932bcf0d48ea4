"""Headless Chromium for what reports make of HTML: a PDF (print-to-PDF, so the PDF
shows what the HTML shows; Chromium embeds the fonts it used, Noto CJK for Chinese
from Debian's fonts-noto-cjk) and screenshots for the guide."""

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


def _render(html: str, target: Path, mode: list[str], timeout: float) -> None:
    """Load a self-contained page in headless Chromium and copy what ``mode`` makes of
    it (written to the work directory as "{out}", whose suffix says the format: .pdf or
    .png) to ``target``."""
    program = browser()
    work = Warden.make_dir("hvbench-chromium-")
    try:
        page, made = work / "page.html", work / f"out{target.suffix.lower() or '.out'}"
        page.write_text(html, encoding="utf-8")
        argv = [program, "--headless", "--disable-gpu", "--hide-scrollbars", *QUIET,
                f"--user-data-dir={work / 'profile'}",
                *(flag.replace("{out}", str(made)) for flag in mode), page.as_uri()]
        if os.geteuid() == 0:  # Chromium refuses to run as root inside its sandbox
            argv.insert(1, "--no-sandbox")
        try:
            done = run_local(argv, timeout)
        except TrialError as exc:
            raise UsageError(f"Chromium failed: {exc}") from None
        if not made.exists() or made.stat().st_size == 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise UsageError("Chromium wrote nothing" + (f": {said[-1][:200]}" if said else ""))
        try:
            shutil.copyfile(made, target)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        Warden.remove_dir(work)


def print_pdf(html: str, target: Path, timeout: float = 180) -> None:
    """Print a self-contained HTML page to ``target`` as a PDF (A4, no header line)."""
    _render(html, target, ["--no-pdf-header-footer", "--print-to-pdf={out}"], timeout)


def screenshot(html: str, target: Path, width: int = 1280, height: int = 1600,
               timeout: float = 180) -> None:
    """The top ``width`` x ``height`` pixels of a page, as PNG."""
    _render(html, target, [f"--window-size={width},{height}", "--screenshot={out}"], timeout)
