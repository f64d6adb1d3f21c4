"""The README's commands and every `embed-ft run` option, through the real entry point.

- every command in the README's bash blocks parses with the real click app; `run` commands pass preflight with
  `--dry-run` (their spec validated); the cheap ones run for real;
- `run`'s options are the spec's fields, each lands in its field (`--task` repeatable: a list), and the README's
  option table is the one generated from the spec;
- the README's first command, scaled down (a tiny SciFact-shaped BEIR set, 2 training steps), runs the whole lineage
  on the embedded platform and prints step lines, the results table and what is still running.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from embed_ft.backends import PLATFORM_FILES_URL_ENV, helix_backend_env
from embed_ft.cli import main, run
from embed_ft.helix import stop_helix_home
from embed_ft.platform.launcher import stop as stop_platform
from embed_ft.platform.settings import PlatformSettings
from embed_ft.run_options import markdown_table, spec_options
from embed_ft.spec.changes import leaf_fields

from .lineage_fixtures import TOPICS, write_beir_set, write_specter_jsonl

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CHEAP = {("--version",), ("--help",), ("report",), ("platform", "status"), ("platform", "stop")}


def readme_commands() -> list[list[str]]:
    """Each `./dev ...` or `embed-ft ...` line of a bash block, as argv after the program (continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text("utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" #")[0])
            if words[:1] == ["./dev"]:
                commands.append(words)
            elif words[:1] == ["embed-ft"]:
                commands.append(words)
    return commands


def parse(args: list[str]) -> click.Context | None:
    """Parse ``args`` with the real click app, down to the leaf command; raises click's usage errors.
    None for an eager option that answers while parsing (``--version``, ``--help``)."""
    try:
        ctx = main.make_context("embed-ft", list(args), resilient_parsing=False)
    except click.exceptions.Exit:
        return None
    while isinstance(ctx.command, click.Group) and ctx.protected_args + ctx.args:
        rest = ctx.protected_args + ctx.args
        sub = ctx.command.get_command(ctx, rest[0])
        assert sub is not None, f"unknown command {rest[0]!r} in {args}"
        ctx = sub.make_context(rest[0], rest[1:], parent=ctx)
    return ctx


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """State of this test only; the CLI sets variables in-process, monkeypatch restores them."""
    for name, sub in (
        ("DAGSTER_HOME", "dagster_home"),
        ("EMBED_FT_HOME", "platform"),
        ("EMBED_FT_DATA_ROOT", "data"),
        ("EMBED_FT_HELIX_HOME", "helix"),
    ):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.delenv("EMBED_FT_BEIR_ROOT", raising=False)
    for name in [*helix_backend_env("", ""), PLATFORM_FILES_URL_ENV]:  # what `--backend helix` sets
        monkeypatch.setenv(name, "")  # recorded, so that the value the CLI sets is undone after the test
        monkeypatch.delenv(name)
    yield tmp_path
    stop_platform(PlatformSettings(home=tmp_path / "platform"))
    stop_helix_home(tmp_path / "helix")
    # Collect what the CLI's runs left now: a finalizer that ran inside a later test's ast.parse made CPython 3.11.7
    # raise "AST constructor recursion depth mismatch" there (test_architecture, after --backend helix's dry run).
    gc.collect()


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_readme_shows_the_commands_a_newcomer_needs():
    commands = [" ".join(c) for c in readme_commands()]
    assert commands[0] == "./dev run"
    assert "./dev test" in commands
    assert any(c.startswith("./dev run --preset tutorial") for c in commands)


@pytest.mark.slow  # 12 s: every README command
def test_every_readme_command_parses_and_the_cheap_ones_run(cli_env, shared_data, monkeypatch):
    monkeypatch.setenv("EMBED_FT_BEIR_ROOT", str(shared_data / "beir"))
    for words in readme_commands():
        args = words[1:]
        if words[0] == "./dev":
            assert args[0] in ("run", "test", "install", "lint"), words
            if args[0] != "run":
                continue
        ctx = parse(args)
        if args[:1] == ["run"]:
            if ctx.params["preset"] == "tutorial":  # the Hub is unreachable here: preflight says so, in one line
                result = invoke(*args, "--dry-run")
                assert result.exit_code == 2, result.output
                assert "Hugging Face Hub cannot be reached" in result.output
                continue
            result = invoke(*args, "--dry-run")
            assert result.exit_code == 0, result.output
            spec = json.loads(result.output.splitlines()[-1])
            assert spec["evaluation"]["tasks"] == ["file://scifact/"]
        elif tuple(args) in CHEAP:
            result = CliRunner().invoke(main, args)
            assert result.exit_code in (0, 1), (args, result.output)  # report with no history, platform down: 1
            assert "Traceback" not in result.output


def test_run_options_are_the_spec_fields_and_each_reaches_its_field(cli_env, tmp_path):
    options = {f"--{option.name}": option for option in spec_options()}
    own = {"--preset", "--experiment", "--backend", "--dry-run", "--verbose"}
    assert {p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0] for p in run.params} == own | set(options)
    assert len(options) == len([f for f in leaf_fields() if f not in ("profile", "preset")])
    source = write_specter_jsonl(tmp_path / "src" / "triplets.jsonl")
    beir_root = write_beir_set(tmp_path / "beir").parent
    write_beir_set(beir_root, "second")
    os.environ["EMBED_FT_BEIR_ROOT"] = str(beir_root)  # restored by cli_env's monkeypatch.delenv
    given = {  # one option of each kind: value, optional set to none, choice, nested, seconds, repeatable, flag
        "--source": str(source),
        "--revision": "main",
        "--sample-size": "none",
        "--validation-size": "0.15",
        "--test-size": "8",
        "--seed": "7",
        "--epochs": "2",
        "--batch-size": "8",
        "--learning-rate": "5e-05",
        "--max-steps": "3",
        "--warmup-steps": "1",
        "--max-seq-length": "64",
        "--poll-interval": "0.5",
        "--finetuning-type": "lora",
        "--lora-alpha": "32",
        "--mining-range-max": "40",
        "--training-seed": "3",
    }
    args = [x for pair in given.items() for x in pair]
    args += ["--task", "file://tinybeir/", "--task", "file://second/", "--no-heldout", "--experiment", "opts"]
    result = invoke("run", "--preset", "smoke", *args, "--dry-run")
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output.splitlines()[-1])
    assert spec["data"]["source"] == str(source)
    assert spec["data"]["revision"] == "main"
    assert spec["split"] == {**spec["split"], "sample_size": None, "validation_size": 0.15, "test_size": 8, "seed": 7}
    assert spec["training"] == {
        **spec["training"],
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 5e-05,
        "max_steps": 3,
        "warmup_steps": 1,
        "max_seq_length": 64,
        "finetuning_type": "lora",
        "seed": 3,
    }
    assert spec["training"]["lora"]["alpha"] == 32
    assert spec["mining"]["range_max"] == 40
    assert spec["remote"]["poll_interval_s"] == 0.5
    assert spec["evaluation"]["tasks"] == ["file://tinybeir/", "file://second/"]
    assert spec["evaluation"]["include_heldout"] is False
    assert options["--learning-rate"].field == "training.learning_rate"


def test_help_shows_each_option_with_its_defaults_and_unit():
    text = " ".join(invoke("run", "--help").output.split())
    # A value shared by several profiles is written once, with all of them.
    assert "[training.learning_rate; default: 2e-05 (local, local-v2), 5e-06 (nemo, nemo-v2); scifact: 8e-05]" in text
    assert "[remote.training_timeout_s; default: 7200.0 (local, local-v2), 14400.0 (nemo, nemo-v2)] [unit: s]" in text
    assert "--max-steps INTEGER|NONE" in text
    assert "smoke: 3] [unit: steps]" in text


def test_the_readme_option_table_is_the_generated_one():
    text = README.read_text("utf-8")
    start, end = text.index("<!-- run-options:start -->"), text.index("<!-- run-options:end -->")
    assert text[start:end].split("-->", 1)[1].strip() == markdown_table(), (
        "README's option table differs from the spec's; paste the output of "
        "`python -c 'from embed_ft.run_options import markdown_table; print(markdown_table())'`"
    )


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"embed-ft, version \d+\.\d+\.\d+\S*\n", result.output)


def write_tiny_scifact(shared: Path) -> Path:
    """A SciFact-shaped BEIR set: test queries (from write_beir_set) and disjoint train queries with train qrels."""
    folder = write_beir_set(shared / "beir", "scifact")
    queries, train = [], ["query-id\tcorpus-id\tscore"]
    for t, (topic, subs) in enumerate(TOPICS.items()):
        for s, sub in enumerate(subs):
            queries.append({"_id": f"train-{t}-{s}", "text": f"Which paper studies {sub} within {topic}?"})
            train.append(f"train-{t}-{s}\td{t}-{s}\t1")
    with open(folder / "queries.jsonl", "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "train.tsv").write_text("\n".join(train) + "\n")
    return folder


@pytest.mark.slow
def test_the_first_readme_command_scaled_down_runs_the_whole_lineage(cli_env, tmp_path):
    shared = tmp_path / "shared"
    write_tiny_scifact(shared)
    write_beir_set(shared / "beir", "tinybeir")
    env = dict(os.environ, EMBED_FT_SHARED_DATA=str(shared), EMBED_FT_BEIR_ROOT=str(shared / "beir"))
    scale = [
        "--test-size",
        "4",
        "--validation-size",
        "2",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--max-seq-length",
        "64",
        "--poll-interval",
        "0.5",
        "--experiment",
        "readme",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embed_ft.cli",
            "run",
            *scale,
            "--task",
            "file://scifact/",
            "--task",
            "file://tinybeir/",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert "Traceback" not in out + proc.stderr
    lines = out.splitlines()
    for step in ("preflight", "specter_raw", "fine_tuned_model", "baseline_nim", "evaluation_report"):
        assert f"start  {step}" in lines
        assert any(re.fullmatch(rf"done   {step} \(.+\)", line) for line in lines), step
    table = lines[lines.index("results (test queries never seen in training; heldout = train queries kept out):") + 1 :]
    assert table[0].split()[:6] == ["task", "metric", "baseline", "fine-tuned", "change", "queries"]
    assert {row.split()[0] for row in table[1:13]} == {"heldout", "scifact", "tinybeir"}
    platform = [line for line in lines if line.startswith("  local platform http://127.0.0.1:")]
    assert len(platform) == 1
    assert platform[0].endswith("-> stop: embed-ft platform stop")
    assert any(line.startswith("  deployment embed-sft-ns/") for line in lines)

    status = CliRunner().invoke(main, ["platform", "status"])
    assert status.exit_code == 0, status.output
    assert status.output.startswith("local platform: up at http://127.0.0.1:")
    report = invoke("report")
    assert report.exit_code == 0
    assert re.match(
        r"latest report: \d{4}-\d\d-\d\d \d\d:\d\d UTC, experiment readme, run [0-9a-f-]{36}\n", report.output
    )
    assert "history lives in " + str(tmp_path / "dagster_home") in report.output
    assert invoke("platform", "stop").output.strip() == "stopped"
    down = CliRunner().invoke(main, ["platform", "status"])
    assert down.exit_code == 1
    assert down.output.startswith("local platform: down")
