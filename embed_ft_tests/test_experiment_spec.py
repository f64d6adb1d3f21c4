"""The stored spec of an experiment: presets run in sequence each get exactly their own spec (issue 21: `./dev run`,
then `--preset smoke`, then `./dev run` trained 3 steps), runs without config (sensors, automation) use the stored
spec, changed fields are new versions with their history, and `embed-ft experiments [show NAME]` prints them.

Cheap scale: the runs store the spec (`experiment_spec`, the first step of every lineage run) and a probe asset
reads it the way every asset does (`run_spec`); nothing is trained. The last preset goes through the CLI in dry-run.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, asset, materialize

from embed_ft.cli import main
from embed_ft.defs.experiment_spec import experiment_spec, run_spec, spec_history, stored_spec
from embed_ft.defs.experiments import EXPERIMENTS, prepare_experiment_run
from embed_ft.profiles import LOCAL
from embed_ft.resources import CustomizerResource
from embed_ft.spec.changes import apply_changes, flat, spec_version
from embed_ft.spec.presets import preset_spec

from .lineage_fixtures import write_beir_set, write_specter_jsonl

RESOURCES = {"customizer": CustomizerResource()}  # no URL: the local platform's profile (nothing is started)


@asset(name="fine_tuned_model", partitions_def=EXPERIMENTS)
def probe(context) -> dict:
    """Stands in for a training asset: the settings it would train with."""
    return run_spec(context).spec.model_dump(mode="json")


def lineage_run(instance, experiment: str, preset: str | None, changes: dict | None = None) -> dict:
    """What `embed-ft run [--preset P] [options]` does before training: store the spec, then read it in a step."""
    run_config = prepare_experiment_run(instance, experiment, preset, changes or {})
    result = materialize(
        [experiment_spec, probe],
        resources=RESOURCES,
        run_config=run_config,
        instance=instance,
        partition_key=experiment,
    )
    assert result.success
    return result.output_for_node("fine_tuned_model")


def automation_run(instance, experiment: str) -> dict:
    """A run launched by a sensor or automation: no config at all, the experiment's partition only."""
    result = materialize([probe], instance=instance, partition_key=experiment)
    assert result.success
    return result.output_for_node("fine_tuned_model")


@pytest.mark.slow  # nine Dagster runs and a CLI dry-run: about 30 s on a shared 2-core machine
def test_presets_run_in_sequence_each_use_exactly_their_own_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("EMBED_FT_HOME", str(tmp_path / "platform"))
    (tmp_path / "dagster_home").mkdir()
    with DagsterInstance.get() as instance:
        for preset in ("scifact", "smoke", "scifact", "smoke"):
            effective = lineage_run(instance, "default", preset)
            assert effective == preset_spec(preset, LOCAL).model_dump(mode="json"), preset
            assert automation_run(instance, "default") == effective  # sensors and automation: the stored spec
        # The leak: scifact after smoke trained max_steps=3 with smoke's settings; it is scifact's again.
        assert stored_spec(instance, "default").spec.training.max_steps == 3
        assert lineage_run(instance, "default", "scifact")["training"]["max_steps"] is None
    # Then the tutorial through the CLI (dry-run: the spec it would store and use), after all of the above; a local
    # copy stands in for the Hub (offline here) and a BEIR set named scidocs for SciDocs.
    source = write_specter_jsonl(tmp_path / "src" / "triplets.jsonl")
    monkeypatch.setenv("EMBED_FT_BEIR_ROOT", str(write_beir_set(tmp_path / "beir", "scidocs").parent))
    result = CliRunner().invoke(
        main, ["run", "--preset", "tutorial", "--source", str(source), "--dry-run"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.splitlines()[-1])
    expected = apply_changes(preset_spec("tutorial", LOCAL), {"data.source": str(source)})
    assert printed == expected.model_dump(mode="json")
    assert f'differs from preset tutorial in data.source="{source}"\n' in result.output


def test_a_changed_field_is_a_new_version_with_history_and_the_run_prints_it(tmp_path, monkeypatch):
    with DagsterInstance.ephemeral() as instance:
        first = lineage_run(instance, "lr", "smoke")
        again = lineage_run(instance, "lr", "smoke")
        changed = lineage_run(instance, "lr", "smoke", {"training.learning_rate": 5e-5})
        assert first == again
        assert changed["training"]["learning_rate"] == 5e-5
        # Without a preset, a change applies to the stored spec (what the Launchpad does with `changes` alone).
        tweaked = lineage_run(instance, "lr", None, {"training.epochs": 2})
        assert (tweaked["training"]["epochs"], tweaked["training"]["learning_rate"]) == (2, 5e-5)
        versions = [row["spec_version"] for row in spec_history(instance, "lr")]
        smoke = preset_spec("smoke", LOCAL)
        faster = apply_changes(smoke, {"training.learning_rate": 5e-5})
        assert versions == [
            spec_version(smoke),
            spec_version(smoke),
            spec_version(faster),
            spec_version(apply_changes(faster, {"training.epochs": 2})),
        ]
        rows = spec_history(instance, "lr")
        assert rows[2]["changed_from_previous"] == {"training.learning_rate": 5e-5}
        assert rows[3]["differs_from_preset"] == {"training.learning_rate": 5e-5, "training.epochs": 2}


def test_invalid_changes_are_refused_when_the_spec_is_stored():
    with DagsterInstance.ephemeral() as instance:
        run_config = prepare_experiment_run(instance, "bad", "smoke", {"training.batch_size": 0})
        result = materialize(
            [experiment_spec],
            resources=RESOURCES,
            run_config=run_config,
            instance=instance,
            partition_key="bad",
            raise_on_error=False,
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message
        assert "training.batch_size: Input should be greater than or equal to 1" in message
        assert stored_spec(instance, "bad") is None


def test_a_run_of_an_experiment_without_a_spec_says_how_to_make_one():
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("experiments", ["nothing"])
        result = materialize([probe], instance=instance, partition_key="nothing", raise_on_error=False)
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message
        assert "has no stored spec: run `embed-ft run --experiment nothing`" in message


def test_experiments_command_lists_and_shows_the_stored_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    with DagsterInstance.get() as instance:
        lineage_run(instance, "fast", "smoke", {"training.max_steps": 5})
        lineage_run(instance, "sci", "scifact")
    runner = CliRunner()
    listed = runner.invoke(main, ["experiments"], catch_exceptions=False).output
    spec = apply_changes(preset_spec("smoke", LOCAL), {"training.max_steps": 5})
    assert (
        f"fast: spec {spec_version(spec)}, preset smoke, profile local; differs from the preset in "
        "training.max_steps=5" in listed
    )
    assert f"sci: spec {spec_version(preset_spec('scifact', LOCAL))}, preset scifact, profile local\n" in listed
    shown = runner.invoke(main, ["experiments", "show", "fast"], catch_exceptions=False).output
    assert "  * training.max_steps = 5" in shown
    assert "    training.epochs = 1" in shown
    assert len([line for line in shown.splitlines() if " = " in line]) == len(flat(spec))
    assert json.loads(runner.invoke(main, ["experiments", "show", "fast", "--json"]).output) == spec.model_dump(
        mode="json"
    )
    missing = runner.invoke(main, ["experiments", "show", "nope"])
    assert missing.exit_code == 1
    assert "embed-ft run --experiment nope" in missing.output


@pytest.mark.parametrize("preset", ["smoke", "scifact", "tutorial"])
def test_a_run_prints_the_fields_that_differ_from_its_preset(preset, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    result = CliRunner().invoke(
        main,
        ["run", "--preset", preset, "--epochs", "2", "--no-heldout", "--source", str(tmp_path), "--dry-run"],
        catch_exceptions=False,
    )
    assert (
        f'differs from preset {preset} in data.source="{tmp_path}", training.epochs=2, '
        "evaluation.include_heldout=false" in result.output
    )
