"""Typed settings, one model per component, declared once and read by the TOML configs, the Python API and
the CLI alike (STYLE: settings sit in the bottom layer, beside errors and the registry).

``base``: `Settings`, the pydantic base (``extra="forbid"``, one-line `SettingsError` naming the key), and
the helpers `default` (a field's default, for CLI options) and `check_keys` (a table that is not one model).
The components: ``finetune.Recipe`` (SPEC §3), ``store.StoreSettings`` (SPEC §4), ``classifier``'s
``ClassifierConfig`` and ``TrainSettings`` (SPEC §6), ``costly.CostlyOptions`` (the costly attacks'
sources), ``zoo.ZooSettings``. Importing them loads no torch, so the CLI shows their defaults without it;
a check that needs torch or a registry (device, precision, corpora, costly attacks) imports it when a
model is made. The component modules re-export their model (``ltmia.finetune.Recipe`` is
``ltmia.settings.Recipe``).

Cache keys and manifests hash ``record()``: the fields in declaration order, as ``dataclasses.asdict`` gave
when these were dataclasses, so a new field needs a default that computes exactly what was computed before.
"""

from ltmia.settings.base import PRECISIONS, SEQ_LEN, BosSetting, Real, Settings, check_keys, default
from ltmia.settings.classifier import ClassifierConfig, TrainSettings
from ltmia.settings.costly import CostlyOptions
from ltmia.settings.finetune import Recipe
from ltmia.settings.store import MEMORY_BUDGET_BYTES, StoreSettings
from ltmia.settings.zoo import ZooSettings, ZooSize, pretrain_recipe

__all__ = [
    "MEMORY_BUDGET_BYTES",
    "PRECISIONS",
    "SEQ_LEN",
    "BosSetting",
    "ClassifierConfig",
    "CostlyOptions",
    "Real",
    "Recipe",
    "Settings",
    "StoreSettings",
    "TrainSettings",
    "ZooSettings",
    "ZooSize",
    "check_keys",
    "default",
    "pretrain_recipe",
]
