"""Check a ``madbench report --html`` page in a real headless browser and take its screenshot.

    python3 docs/screenshot.py RUN_DIR... [--out docs/report.png] [--html report.html]

Writes the page with ``madbench report --html``, loads it in headless Chromium (Debian:
``apt-get install chromium``), checks the DOM the browser built (tables, the figures as SVG,
the provenance) and saves a screenshot. Exit 0 when the page renders as expected, 1 when not,
77 when no Chromium is installed (tests then skip). ``tests/test_report_cli.py`` runs the same
check on a tiny run; ``docs/report.png`` was made by this script (see docs/report.md).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-dev-shm-usage"]


def find_chromium() -> str | None:
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:   # a fresh profile: no state, no locks
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HOME": profile})


def dump_dom(browser: str, html: Path, timeout: int = 120) -> str:
    """The DOM Chromium built from the page (after parsing and layout)."""
    return _run(browser, ["--dump-dom", html.resolve().as_uri()], timeout).stdout


def screenshot(browser: str, html: Path, png: Path, width: int = 1280, height: int = 2400,
               timeout: int = 120) -> None:
    _run(browser, [f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                   html.resolve().as_uri()], timeout)
    if not png.is_file() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise RuntimeError(f"Chromium wrote no screenshot to {png}")


def page_problems(dom: str, architectures: list[str]) -> list[str]:
    """What is missing from the rendered page: the figures, the tables, the provenance, an
    architecture."""
    problems = []
    if len(re.findall(r"<svg\b", dom)) < 1:
        problems.append("no figure (inline SVG) in the rendered page")
    if "<table" not in dom or "<td" not in dom:
        problems.append("no table rows in the rendered page")
    if "Provenance" not in dom:
        problems.append("no provenance section")
    problems += [f"architecture {a!r} missing" for a in architectures if a not in dom]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--out", default="docs/report.png", help="screenshot to write")
    parser.add_argument("--html", default=None, help="keep the page here (default: temporary)")
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(args.html or Path(tmp) / "report.html")
        subprocess.run([sys.executable, "-m", "madbench", "report", *args.run_dirs,
                        "--html", str(html)], check=True)
        from madbench.store import load_records
        archs = sorted({r["arch_name"] for r in load_records(args.run_dirs)})
        problems = page_problems(dump_dom(browser, html), archs)
        for problem in problems:
            print(f"page check failed: {problem}", file=sys.stderr)
        screenshot(browser, html, Path(args.out), height=args.height)
        print(f"wrote {args.out} ({browser})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
