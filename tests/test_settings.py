"""Typed settings (``ltmia.settings``): cache keys and recorded JSON unchanged, one-line errors naming the
key, and defaults that live in one place (the CLI and `LTMIA` read them from the models)."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ltmia import cli
from ltmia.classifier import LTMIA
from ltmia.errors import SettingsError
from ltmia.settings import (
    ClassifierConfig,
    Recipe,
    StoreSettings,
    TrainSettings,
    ZooSettings,
    ZooSize,
    default,
)
from ltmia.settings.classifier import CONFIG_PARAMS
from ltmia.study.config import parse, read_toml
from ltmia.study.stages import plan

DATA = Path(__file__).parent / "data"
MINI = DATA / "mini.toml"
EXPECTED = json.loads((DATA / "settings_keys.json").read_text())
"""Written by the code before the settings were typed (dataclasses): every stage key of the mini study and
the SHA-256 of recorded settings JSON. A long study's cache is keyed by these; they must not move."""


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def test_cache_keys_of_the_mini_study_are_unchanged():
    study = plan(parse(read_toml(str(MINI))))
    assert {stage.label: stage.key for stage in study.stages} == EXPECTED["mini_stage_keys"]


def test_recorded_settings_json_is_unchanged():
    recipe = Recipe(lr=1, epochs=2, weight_decay=0, lora=True, lora_targets=["q_proj", "v_proj"], seed=7)
    classifier = LTMIA(epochs=3, warmup_epochs=1, lr=1, grad_clip=None).settings()
    found = {
        "recipe": digest(recipe.record()),
        "default_recipe": digest(Recipe().record()),
        "zoo": digest(ZooSettings().record()),
        "store_plan": digest(StoreSettings(k=10, dtype="float16").plan()),
        "classifier_training": digest(classifier.record()),
    }
    assert found == EXPECTED["recorded"]


def test_an_int_given_for_a_real_stays_an_int():
    """``lr = 1`` in TOML was recorded as 1 by the dataclasses; 1.0 would change the key."""
    recorded = Recipe(lr=1, weight_decay=0).record()
    assert type(recorded["lr"]) is int and type(recorded["weight_decay"]) is int
    assert type(Recipe(lr=0.5).record()["lr"]) is float
    assert Recipe(lora_targets=["q_proj"]).lora_targets == ("q_proj",)
    assert list(Recipe().record()) == list(Recipe.model_fields)  # declaration order, as asdict gave


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: r["combos"]["train"].update(recipe={"learning_rate": 1e-4}),
            "[combos.train.recipe]: unknown key 'learning_rate' (known: epochs, batch_size, lr,",
        ),
        (
            lambda r: r["defaults"]["recipe"].update(epoch=2),
            "[defaults.recipe]: unknown key 'epoch' (known: epochs,",
        ),
        (
            lambda r: r["combos"]["train"].update(recipe={"lr": "fast"}),
            "[combos.train.recipe]: lr: input should",
        ),
        (lambda r: r["combos"]["train"].update(recipe={"epochs": 0}), "[combos.train.recipe]: epochs: input"),
        (
            lambda r: r["classifiers"]["tiny"].update(lerning_rate=1),
            "[classifiers.tiny]: unknown key 'lerning_rate'",
        ),
        (lambda r: r["classifiers"]["tiny"].update(epochs="ten"), "[classifiers.tiny]: epochs: input should"),
        (lambda r: r["classifiers"]["tiny"].update(heads=3), "[classifiers.tiny]: d_model 16 must be even"),
        (lambda r: r["classifiers"]["tiny"].update(variant="resnet"), "[classifiers.tiny]: unknown variant"),
        (lambda r: r.update(store={"shard": 8}), "[store]: unknown key 'shard' (known: k, dtype,"),
        (
            lambda r: r.update(store={"dtype": "int8"}),
            "[store]: dtype 'int8' is not one of: float32, float16",
        ),
        (lambda r: r["zoo"].update(hiden=16), "[zoo]: unknown key 'hiden'"),
        (lambda r: r["zoo"].update(corpora=["nope"]), "[zoo]: unknown built-in corpus 'nope'"),
        (lambda r: r["groups"]["held-out"].update(splits="all"), "[groups.held-out]: unknown key 'splits'"),
        (lambda r: r.update(sed=1), "study config: unknown key 'sed'"),
        (lambda r: r["defaults"].update(member=40), "[defaults]: unknown key 'member'"),
        (lambda r: r["defaults"].update(kind="prose"), "[defaults]: kind 'prose' is not one of: text, code"),
        (lambda r: r["combos"]["train"].update(members="many"), "[combos.train]: members: input should"),
        (lambda r: r.update(costly={"attacks": ["recall"], "shot": 3}), "[costly]: unknown key 'shot'"),
        (
            lambda r: r.update(costly={"attacks": ["recall"], "shots": "many"}),
            "[costly]: shots: input should",
        ),
    ],
)
def test_a_config_mistake_is_one_line_naming_section_and_key(edit, message):
    raw = read_toml(str(MINI))
    edit(raw)
    with pytest.raises(SettingsError, match=re.escape(message)) as error:
        parse(raw)
    assert "\n" not in str(error.value)


def test_direct_construction_errors_are_settings_errors():
    with pytest.raises(SettingsError, match=r"^recipe: unknown key 'learning_rate' \(known: epochs"):
        Recipe(learning_rate=1e-4)
    with pytest.raises(
        SettingsError, match="recipe: schedule 'step' is not one of: constant, cosine, linear"
    ):
        Recipe(schedule="step")
    recipe = Recipe()
    with pytest.raises(SettingsError, match="optimizer"):
        recipe.optimizer = "adam"  # assignments are validated too
    with pytest.raises(SettingsError, match="memory budget"):
        StoreSettings(memory_budget_bytes=0)


def test_cli_and_estimator_defaults_come_from_the_models():
    """Every CLI option named like a field of its command's settings model defaults to the model's value."""
    commands = {
        cli.finetune: [Recipe],
        cli.extract_command: [StoreSettings],
        cli.train_command: [TrainSettings, ClassifierConfig],
        cli.zoo_build: [ZooSettings, ZooSize],
    }
    checked = 0
    for command, models in commands.items():
        for name, parameter in inspect.signature(command).parameters.items():
            for model in models:
                fields = model.model_fields if hasattr(model, "model_fields") else model.__dataclass_fields__
                if name in fields:
                    assert parameter.default == default(model, name), (command.__name__, name)
                    checked += 1
    assert checked >= 20
    assert LTMIA().settings() == TrainSettings()
    estimator = inspect.signature(LTMIA).parameters
    for name in ClassifierConfig.model_fields:
        if name in estimator:
            assert estimator[name].default == default(ClassifierConfig, name), name


def test_a_study_classifier_takes_every_estimator_setting():
    """The drift issue 18 found: the study config lacked mlp_hidden, label_smoothing, min_lr, grad_clip."""
    estimator = set(inspect.signature(LTMIA).parameters) - {"memory_budget_bytes", "device"}
    assert set(CONFIG_PARAMS) == estimator


def test_the_cli_reads_its_defaults_without_torch():
    code = "import sys, ltmia.cli; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
