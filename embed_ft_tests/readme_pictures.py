"""The README's pictures, taken from the history of the README's first command (`./dev run`), not from a test run.

    DAGSTER_HOME=/tmp/first/dagster_home EMBED_FT_HOME=/tmp/first/platform ./dev run
    .venv/bin/python -m embed_ft_tests.readme_pictures --dagster-home /tmp/first/dagster_home --out docs/img

Serves that DAGSTER_HOME with `dagster-webserver` on 127.0.0.1 and drives headless Chromium (Debian's, as the
browser test does) over it: the lineage, the experiment's report with its chart, and the leaderboard. Nothing is
materialized; the pictures show the run that is there.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .browser_helpers import chromium_browser, new_page, running_webserver

REPORT_CHART = "baseline vs fine-tuned"


def take_pictures(dagster_home: Path, out: Path, experiment: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONUNBUFFERED": "1"}
    saved = []
    with running_webserver(dagster_home, env, log_path=out.parent / ".readme_pictures_webserver.log") as ui_url:
        with chromium_browser() as browser:
            page = new_page(browser, width=2560, height=1440, timeout_ms=90_000)
            page.goto(f"{ui_url}/asset-groups")
            page.get_by_text("Global asset lineage").wait_for()
            page.get_by_text("Hide navigation").click()
            page.keyboard.press("Alt+e")  # the graph's "Expand all groups"
            page.get_by_text("evaluation_report", exact=True).first.wait_for()
            page.wait_for_timeout(2000)  # the zoom-to-fit animation
            saved.append(out / "lineage.png")
            page.screenshot(path=str(saved[-1]))

            page = new_page(browser, width=1600, height=1200, timeout_ms=90_000)
            page.goto(f"{ui_url}/assets/evaluation_report?partition={experiment}")
            page.get_by_text("[Show Markdown]").first.click()
            page.get_by_role("dialog").get_by_role("img", name=REPORT_CHART).wait_for()
            page.wait_for_function(
                f"() => [...document.querySelectorAll('img[alt=\"{REPORT_CHART}\"]')]"
                ".some(i => i.complete && i.naturalWidth > 0)"
            )
            saved.append(out / "experiment-report.png")
            page.screenshot(path=str(saved[-1]))

            page = new_page(browser, width=2000, height=900, timeout_ms=90_000)
            page.goto(f"{ui_url}/assets/experiment_leaderboard")
            page.get_by_role("cell", name=experiment, exact=True).first.wait_for()
            page.wait_for_timeout(1000)
            saved.append(out / "leaderboard.png")
            page.screenshot(path=str(saved[-1]))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster-home", type=Path, required=True, help="the DAGSTER_HOME of the first command")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--experiment", default="default", help="the experiment (partition) the run made")
    args = parser.parse_args()
    for path in take_pictures(args.dagster_home.resolve(), args.out, args.experiment):
        print(f"{path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
