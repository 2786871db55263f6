"""The LT-MIA classifier's settings (SPEC §6): the model (``ClassifierConfig``, ``ltmia.classifier.model``)
and its training (``TrainSettings``, ``ltmia.classifier.train``); ``ltmia.classifier.LTMIA`` takes both as
keyword arguments with these defaults."""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from ltmia.settings.base import Real, Settings
from ltmia.settings.store import MEMORY_BUDGET_BYTES


class ClassifierConfig(Settings):
    """Which model and how big; the defaults are the paper's (SPEC §6: about 0.83 M parameters).

    ``variant`` names a model of ``ltmia.classifier.model.VARIANTS``, checked when it is built (the registry
    is filled by the models, which need torch).

    ``feature_dim`` and ``seq_len`` must match the feature store (7k+14 and L of SPEC §4). ``d_model``,
    ``heads``, ``layers`` and ``ff`` size the transformer; ``mlp_hidden`` the MLP variants.
    """

    what: ClassVar[str] = "classifier"

    variant: str = "transformer"
    feature_dim: int = 154
    seq_len: int = 128
    d_model: int = 192
    heads: int = 8
    layers: int = 2
    ff: int = 576
    dropout: Real = 0.05
    mlp_hidden: int = 256

    @model_validator(mode="after")
    def check(self) -> ClassifierConfig:
        sizes = ("feature_dim", "seq_len", "d_model", "heads", "layers", "ff", "mlp_hidden")
        small = [
            name for name in sizes if not isinstance(getattr(self, name), int) or getattr(self, name) < 1
        ]
        if small:
            raise ValueError(f"classifier sizes must be positive integers: {', '.join(small)}")
        if self.d_model % self.heads or self.d_model % 2:
            raise ValueError(
                f"d_model {self.d_model} must be even and divisible by the {self.heads} attention heads"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


class TrainSettings(Settings):
    """How to train; the defaults are the paper's (SPEC §6).

    ``micro_batch_size`` rows go through the model at once (activation memory); ``memory_budget_bytes``
    bounds the feature rows held by the shuffle buffer. Neither changes the maths, but the buffer size
    decides the row order, so it is recorded with the seed. ``patience`` (not in the paper, which trains
    all 80 epochs) ends training once the validation AUC has not improved for that many epochs: training
    to convergence without paying for epochs that only overfit; the schedule still spans ``epochs``.
    """

    what: ClassVar[str] = "classifier training"

    lr: Real = 9.88e-4
    weight_decay: Real = 0.028
    label_smoothing: Real = 0.02
    batch_size: int = 16384
    epochs: int = 80
    warmup_epochs: int = 10
    min_lr: Real = 1e-6
    grad_clip: Real | None = 1.0
    patience: int | None = None  # stop after this many epochs without a better validation AUC
    seed: int = 42
    micro_batch_size: int = 512
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES
    device: str = "auto"

    @model_validator(mode="after")
    def check(self) -> TrainSettings:
        counts = {
            "batch size": self.batch_size,
            "epochs": self.epochs,
            "micro-batch size": self.micro_batch_size,
        }
        if self.patience is not None:
            counts["patience"] = self.patience
        small = [name for name, value in counts.items() if value < 1]
        if small:
            raise ValueError(f"{', '.join(small)} must be at least 1")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"warmup epochs ({self.warmup_epochs}) must be between 0 and the epochs ({self.epochs}); "
                "lower the warmup"
            )
        if not 0 <= self.min_lr <= self.lr or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("need lr > 0, 0 <= min_lr <= lr and weight_decay >= 0")
        if not 0 <= self.label_smoothing < 1 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ValueError("label smoothing must be in [0, 1) and grad_clip positive (or None)")
        if self.memory_budget_bytes < 1:
            raise ValueError(
                f"the memory budget must be a positive number of bytes, not {self.memory_budget_bytes}"
            )
        from ltmia.device import resolve_device  # torch: only when settings are made, not imported

        try:
            resolve_device(self.device)
        except RuntimeError as error:
            raise ValueError(f"unknown device {self.device!r}: {error}") from None
        return self


LAYOUT_FIELDS = ("feature_dim", "seq_len")  # the store's feature layout, not a choice
MODEL_PARAMS = tuple(name for name in ClassifierConfig.model_fields if name not in LAYOUT_FIELDS)
"""``ltmia.classifier.LTMIA`` parameters that size the model: ``ClassifierConfig`` but the layout."""
INPUT_PARAMS = ("groups", "score_inputs")
"""`LTMIA` parameters of neither model: which inputs the classifier reads (``groups``: SPEC §4's kept;
``score_inputs``: one-pass baseline scores appended, ``ltmia.classifier.score_inputs``)."""
RUNTIME_PARAMS = ("memory_budget_bytes", "device")
"""`LTMIA` parameters of the machine rather than of the classifier: not settings of a study's classifier."""
CONFIG_PARAMS = (
    *MODEL_PARAMS,
    *INPUT_PARAMS,
    *(name for name in TrainSettings.model_fields if name not in RUNTIME_PARAMS),
)
"""What a study's ``[classifiers.<name>]`` table may set: every other `LTMIA` parameter."""
