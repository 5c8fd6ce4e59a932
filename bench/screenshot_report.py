"""Render a ``report.html`` with headless Chromium and save a full-page screenshot.

The report is meant to be read in a real browser; this looks at it the way a reader
does, at 1280 px wide, so that layout problems (figures wider than the page, cramped
tables, unreadable text) show up in a PNG a person can look at.

usage:
    python bench/screenshot_report.py RUN/report.html [--out /tmp/report_screenshot.png]
    python bench/screenshot_report.py RUN            # a run directory: its report.html

Needs Chromium (Debian: ``apt-get install -y chromium``) and Pillow (installed with
matplotlib). Chromium's headless ``--screenshot`` captures one window, so the page is
rendered into a tall window and the empty background below the page is cut off; when
the page reaches the bottom of the window the window is made taller and it is rendered
again.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280
#: first window height; doubled while the page fills it, up to MAX_HEIGHT
START_HEIGHT = 8000
MAX_HEIGHT = 32000


def find_chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render(html: Path, png: Path, height: int, chromium: str, width: int = WIDTH) -> None:
    """One headless Chromium screenshot of ``html`` in a ``width`` x ``height`` window."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--disable-background-networking", "--no-first-run", "--mute-audio",
           f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()]
    # a private profile: no state shared with (or left in) the user's browser
    with tempfile.TemporaryDirectory(prefix="grownet-chromium-") as profile:
        proc = subprocess.run([*cmd, f"--user-data-dir={profile}"], capture_output=True,
                              text=True, timeout=180)
    if proc.returncode != 0 or not png.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"chromium failed (exit {proc.returncode}):\n{tail}")


def content_bottom(png: Path) -> int:
    """The last pixel row that differs from the page background (the bottom-left pixel)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    background = pixels[-1, 0]
    differs = np.abs(pixels - background).sum(axis=2).max(axis=1) > 0
    rows = np.flatnonzero(differs)
    return int(rows[-1]) + 1 if rows.size else 0


def screenshot(html: Path, out: Path, margin: int = 24) -> tuple[int, int]:
    """A full-page screenshot of ``html`` at 1280 px width, written to ``out``.

    Returns
    -------
    (width, height) of the PNG written.
    """
    from PIL import Image

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("chromium not found: install it (Debian/Ubuntu: "
                         "apt-get install -y chromium) and run this again")
    height = START_HEIGHT
    with tempfile.TemporaryDirectory(prefix="grownet-shot-") as tmp:
        raw = Path(tmp) / "raw.png"
        while True:
            render(html, raw, height, chromium)
            bottom = content_bottom(raw)
            if bottom < height - margin or height >= MAX_HEIGHT:
                break
            height = min(2 * height, MAX_HEIGHT)  # the page fills the window: go taller
        with Image.open(raw) as im:
            cropped = im.crop((0, 0, im.width, min(im.height, bottom + margin)))
            out.parent.mkdir(parents=True, exist_ok=True)
            cropped.save(out)
            return cropped.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="report.html, or a run directory holding one")
    parser.add_argument("--out", default="/tmp/report_screenshot.png", help="PNG to write")
    args = parser.parse_args(argv)
    html = Path(args.report)
    if html.is_dir():
        html = html / "report.html"
    if not html.is_file():
        print(f"{html} not found; make it with: grownet report RUN", file=sys.stderr)
        return 2
    width, height = screenshot(html, Path(args.out))
    print(f"screenshot: {args.out} ({width} x {height} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
