"""Make ``docs/figures/report.png``: a screenshot of the HTML report of two small real runs.

Trains the seed paper's CNN on scikit-learn's digits with Kaiming and with
Xavier initialisation (as ``python -m tensorstats.demo``: 300 steps, recorded
every 10), writes their report with :func:`tensorstats.report.write_report`
and photographs its top with headless Chromium. Needs torch, scikit-learn,
matplotlib and ``/usr/bin/chromium``::

    .venv/bin/python docs/make_report_screenshot.py [--out docs/figures/report.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time


def main(argv: list[str] | None = None) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "figures", "report.png"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--keep", help="folder to keep the runs and the report in")
    args = parser.parse_args(argv)

    from tensorstats.demo import INITS, load_digits_split, train
    from tensorstats.report import write_report

    work = args.keep or tempfile.mkdtemp(prefix="tensorstats-report-")
    data = load_digits_split()
    paths = {}
    for init in INITS:
        paths[init] = os.path.join(work, f"{init}.zarr")
        train(paths[init], init, data, steps=args.steps, every=10)
    start = time.perf_counter()
    index = write_report(paths, os.path.join(work, "report"), overwrite=True)
    print(f"report written in {time.perf_counter() - start:.1f}s: {index}")
    subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={os.path.join(work, 'profile')}",
                    f"--screenshot={os.path.abspath(args.out)}", "--window-size=1280,2400",
                    index.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
