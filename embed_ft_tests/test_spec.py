"""The experiment spec: typed, bounded, unknown fields refused, defaults from the one profile table, presets as
named specs, changes validated once with the field named, versions that follow the settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embed_ft.profiles import LOCAL, NEMO_V1, PROFILES, get_profile
from embed_ft.spec.changes import SpecError, apply_changes, differences, flat, leaf_fields, parse_spec, spec_version
from embed_ft.spec.experiment import ExperimentSpec, default_spec
from embed_ft.spec.presets import PRESETS, preset_spec


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_backend_dependent_defaults_come_from_the_profile(profile):
    spec = default_spec(profile)
    assert spec.profile == profile.name
    assert spec.training.target == profile.target
    assert spec.training.batch_size == profile.batch_size
    assert spec.training.learning_rate == profile.learning_rate
    assert spec.training.max_seq_length == profile.max_seq_length
    assert spec.serving.base_model == profile.base_model
    assert spec.evaluation.tasks == profile.eval_tasks
    assert spec.remote.training_timeout_s == profile.training_timeout_s


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("profile", [LOCAL, NEMO_V1], ids=["local", "nemo"])
def test_every_preset_is_a_valid_spec_that_differs_from_the_defaults_only_by_its_changes(name, profile):
    spec = preset_spec(name, profile)
    assert spec.preset == name
    assert differences(spec, default_spec(profile)) == {
        key: value for key, value in PRESETS[name].changes.items() if flat(default_spec(profile))[key] != value
    }
    assert parse_spec(spec.model_dump(mode="json")) == spec  # stored and read back unchanged


def test_the_smoke_preset_trains_three_steps_and_scifact_three_epochs():
    assert preset_spec("smoke", LOCAL).training.max_steps == 3
    assert preset_spec("smoke", LOCAL).training.epochs == 1
    assert preset_spec("scifact", LOCAL).training.max_steps is None
    assert preset_spec("scifact", LOCAL).training.epochs == 3


def test_a_change_is_validated_once_with_the_field_named():
    spec = preset_spec("scifact", LOCAL)
    with pytest.raises(SpecError, match=r"training\.batch_size: .*greater than or equal to 1"):
        apply_changes(spec, {"training.batch_size": 0})
    with pytest.raises(SpecError, match=r"training\.learning_rte: no such field"):
        apply_changes(spec, {"training.learning_rte": 1e-5})
    with pytest.raises(SpecError, match=r"evaluation\.tasks: .*unknown evaluation task"):
        apply_changes(spec, {"evaluation.tasks": ["scifact"]})
    with pytest.raises(SpecError, match=r"training\.lora\.alpha"):
        apply_changes(spec, {"training.lora.alpha": 0})
    with pytest.raises(SpecError, match=r"mining: .*fewer candidates"):
        apply_changes(spec, {"mining.range_max": 4, "mining.num_negatives": 3})


def test_unknown_fields_are_refused_in_a_stored_document():
    document = preset_spec("smoke", LOCAL).model_dump(mode="json")
    document["training"]["lr"] = 1e-3
    with pytest.raises(SpecError, match=r"training\.lr: Extra inputs are not permitted"):
        parse_spec(document)


def test_the_version_follows_the_settings_not_the_preset_name():
    smoke = preset_spec("smoke", LOCAL)
    changed = apply_changes(smoke, {"training.max_steps": 4})
    assert spec_version(changed) != spec_version(smoke)
    assert spec_version(apply_changes(changed, {"training.max_steps": 3})) == spec_version(smoke)
    assert spec_version(apply_changes(smoke, {"preset": "other"})) == spec_version(smoke)
    assert spec_version(changed, "data") == spec_version(smoke, "data")
    assert differences(changed, smoke) == {"training.max_steps": 4}


def test_every_field_is_described():
    def described(model: type) -> list[str]:
        missing = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, ExperimentSpec.__mro__[1]):
                missing += [f"{name}.{m}" for m in described(annotation)]
            elif not info.description:
                missing.append(name)
        return missing

    assert described(ExperimentSpec) == []
    assert len(leaf_fields()) == len(flat(default_spec(LOCAL)))


def test_profiles_are_found_by_name():
    assert get_profile("local") is LOCAL
    with pytest.raises(ValueError, match="unknown backend profile 'v9'"):
        get_profile("v9")


def test_each_backend_default_is_written_once():
    """The profile table is the one place a backend default is written (issue 21: the learning rate was in six)."""
    package = Path(__file__).resolve().parents[1] / "embed_ft"
    sources = {path: path.read_text("utf-8") for path in package.rglob("*.py")}
    for profile in PROFILES.values():
        spellings = [profile.target, profile.base_model, profile.nim_image, f'"{profile.nim_tag}"']
        spellings += [f"{profile.learning_rate:.0e}".replace("e-0", "e-"), f"{profile.learning_rate:.0e}"]
        assert any(spelling in sources[package / "profiles.py"] for spelling in spellings[-2:])
        for spelling in spellings:
            found = sorted(str(path.relative_to(package)) for path, text in sources.items() if spelling in text)
            assert found in ([], ["profiles.py"]), (spelling, found)
    for pattern in (r"batch_size\W+256\b", r"batch_size\W+32\b", r"max_seq_length\W+2048\b", r"\b4 \* 3600\b"):
        found = sorted(str(p.relative_to(package)) for p, text in sources.items() if re.search(pattern, text))
        # The scifact preset chooses batch 32 on every backend (a preset's change, not a default restated).
        assert [f for f in found if f != "spec/presets.py"] in ([], ["profiles.py"]), (pattern, found)
