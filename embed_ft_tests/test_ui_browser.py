"""Proof in a real browser: the lineage materialized twice into a persistent Dagster instance, served by
`dagster-webserver`, read by headless Chromium (lineage graph, evaluation_report table, metric history).

Tiny generated data by default (fast, flat metrics). With ``EMBED_FT_SCREENSHOT_DIR`` set the screenshots are
also saved there, for the README; then, when ``../shared/data`` is present, the runs use real data instead
(the SPECTER sample and a SciFact subset, two experiments with different step counts) so that the metric
history plots show real, differing numbers. That variant takes several minutes.

    EMBED_FT_SCREENSHOT_DIR=docs/img .venv/bin/python -m pytest embed_ft_tests/test_ui_browser.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from .browser_helpers import (
    LINEAGE_ASSETS,
    chromium_browser,
    materialize_lineage,
    new_page,
    platform_env,
    require_chromium,
    running_webserver,
    write_beir_subset,
    write_dagster_yaml,
)
from .lineage_fixtures import tiny_lineage_run_config, write_beir_set, write_specter_jsonl
from .platform_server import running_platform

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCREENSHOT_DIR_ENV = "EMBED_FT_SCREENSHOT_DIR"
PLOT_METRIC = "ndcg_cut_10"


def readme_mode() -> bool:
    return bool(os.environ.get(SCREENSHOT_DIR_ENV)) and SHARED_DATA.is_dir()


def lineage_runs(tmp_path: Path) -> tuple[str, list[dict]]:
    """(BEIR task name, run configs of the two materializations) and the data they read, written under tmp_path."""
    beir_root = tmp_path / "beir"
    if readme_mode():
        write_beir_subset(SHARED_DATA / "beir" / "scifact", beir_root, "scifact-mini")
        source = SHARED_DATA / "specter-sample" / "s2orc_citation_triplets.jsonl"
        configs = []
        for experiment, steps in (("short-run", 3), ("longer-run", 20)):
            config = tiny_lineage_run_config(str(source), "file://scifact-mini/", experiment)
            config["ops"]["specter_triplets"]["config"].update(sample_size=200, test_size=30)
            config["ops"]["fine_tuned_model"]["config"].update(max_steps=steps)
            configs.append(config)
        return "scifact-mini", configs
    write_beir_set(beir_root)
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    # The same config twice: the second run reattaches to every remote job (seconds) and still records a
    # second evaluation_report materialization, i.e. a metric history of two points.
    config = tiny_lineage_run_config(str(source), "file://tinybeir/")
    return "tinybeir", [config, config]


@pytest.fixture
def served_lineage(tmp_path, monkeypatch):
    """The platform, a DAGSTER_HOME holding two lineage runs, and the webserver over it: (ui_url, task, run ids)."""
    require_chromium()
    dagster_home = tmp_path / "dagster_home"
    write_dagster_yaml(dagster_home)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    task, configs = lineage_runs(tmp_path)
    with running_platform(tmp_path, beir_root=tmp_path / "beir") as (base_url, _settings):
        with DagsterInstance.get() as instance:
            run_ids = [materialize_lineage(instance, base_url, config).run_id for config in configs]
            records = instance.fetch_materializations(AssetKey("evaluation_report"), limit=10).records
            assert {r.run_id for r in records} == set(run_ids)
        with running_webserver(dagster_home, platform_env(base_url, dagster_home)) as ui_url:
            yield ui_url, task, run_ids


def save(page, tmp_path: Path, name: str, **screenshot_options) -> Path:
    path = tmp_path / "screenshots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), **screenshot_options)
    target = os.environ.get(SCREENSHOT_DIR_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path


def test_lineage_report_and_metric_history_in_chromium(served_lineage, tmp_path):
    ui_url, task, run_ids = served_lineage
    with chromium_browser() as browser:
        # 1. The global lineage: every group expanded, every asset named in its node. At this viewport the
        #    graph is drawn at full scale (full names, kinds, materialization times), not as truncated boxes.
        page = new_page(browser, width=2560, height=1440)
        page.goto(f"{ui_url}/asset-groups")
        page.get_by_text("Global asset lineage").wait_for()
        for group in ("data", "training", "serving", "evaluation"):
            page.get_by_text(group, exact=True).first.wait_for()
        page.get_by_text("Hide navigation").click()
        page.keyboard.press("Alt+e")  # the graph's "Expand all groups"
        for asset in LINEAGE_ASSETS:
            page.get_by_text(asset, exact=True).first.wait_for()
        page.wait_for_timeout(1500)  # let the graph finish its zoom-to-fit animation before the picture
        assert save(page, tmp_path, "lineage.png").stat().st_size < 500_000

        # 2. evaluation_report: the report table and its metric entries, from the latest materialization.
        page = new_page(browser, width=1600, height=1200)
        page.goto(f"{ui_url}/assets/evaluation_report")
        page.get_by_role("columnheader", name="fine-tuned").first.wait_for()
        for text in (task, "heldout", PLOT_METRIC):
            page.get_by_role("cell", name=text, exact=True).first.wait_for()
        for column in ("baseline", "fine_tuned", "delta", "relative_delta"):
            page.get_by_text(f"{task}/{PLOT_METRIC}/{column}", exact=True).first.wait_for()

        # 3. The metric history: the metadata plots of every numeric entry over the materializations.
        page.get_by_text("Plots", exact=True).first.click()
        first_plot = page.get_by_text(f"{task}/{PLOT_METRIC}/baseline", exact=True).first
        last_plot = page.get_by_text(f"{task}/{PLOT_METRIC}/relative_delta", exact=True).first
        first_plot.wait_for()
        # Bring the four plots of the metric (baseline, delta, fine_tuned, relative_delta: two rows of two) just
        # under the page's sticky header.
        first_plot.evaluate("title => { title.scrollIntoView({block: 'start'}); window.scrollBy(0, -140); }")
        page.locator("canvas").first.wait_for()  # the UI draws each metadata plot on a canvas
        page.wait_for_timeout(1000)
        top, bottom = first_plot.bounding_box(), last_plot.bounding_box()
        clip = {"x": top["x"] - 16, "y": top["y"] - 16, "width": 920, "height": bottom["y"] - top["y"] + 300}
        assert save(page, tmp_path, "metric-history.png", clip=clip).stat().st_size < 500_000

        # 4. Both materializations are in the asset's event history, each naming its run (newest first).
        page.goto(f"{ui_url}/assets/evaluation_report?view=events")
        rows = page.locator('[class*="assetListRow"]')
        rows.nth(1).wait_for()
        assert rows.count() == len(run_ids)
        for row, run_id in zip(range(len(run_ids)), reversed(run_ids)):
            rows.nth(row).click()
            page.get_by_text(f"Materialized in run {run_id[:8]}").first.wait_for()
