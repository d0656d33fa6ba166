"""Open a report.html in headless Chromium with the network switched off and save a screenshot.

    python benchmarks/check_report_browser.py REPORT.html [--out shot.png] [--width 1280] [--height 2400]

Chromium is Debian's package ``chromium`` (``apt-get install -y chromium``). Every host name
resolves to nothing while the page loads, so a page that needed the network would show broken
pictures in the screenshot. Also checks that the DOM Chromium built holds every picture of the
file and the sortable tables, and prints what it found.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium found: apt-get install -y chromium")


def run_headless(page: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", *NO_NETWORK, *args, page.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, default=Path("report_screenshot.png"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2400)
    args = ap.parse_args()
    source = args.report.read_text()
    dom = run_headless(args.report, "--dump-dom").stdout
    shot = run_headless(args.report, f"--screenshot={args.out.resolve()}",
                        f"--window-size={args.width},{args.height}")
    images = len(re.findall(r"<img ", source))
    found = {"pictures in the file": images, "pictures in Chromium's DOM": len(re.findall(r"<img ", dom)),
             "sortable tables": len(re.findall(r'class="?sortable', dom)),
             "screenshot": str(args.out) if args.out.is_file() else f"missing ({shot.stderr.strip()[-300:]})"}
    for k, v in found.items():
        print(f"{k:28s} {v}")
    ok = args.out.is_file() and found["pictures in Chromium's DOM"] == images and dom.strip()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
