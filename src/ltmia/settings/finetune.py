"""The fine-tuning recipe (SPEC §3): how a target is trained from its base (``ltmia.finetune``), and how
the zoo is pretrained (``ltmia.settings.zoo.pretrain_recipe``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ltmia.settings.base import PrecisionSetting, Real, Settings


class Recipe(Settings):
    """How to train; defaults are the paper's fine-tuning recipe (SPEC §3).

    Recorded whole in a target's manifest and in a study's fine-tune key (``record()``: the fields in this
    order), so a new field needs a default that trains exactly as before.
    """

    what: ClassVar[str] = "recipe"

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: Real = Field(default=5e-5, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: Real | None = None  # None: the optimizer's torch default
    momentum: Real = 0.0  # SGD only
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    grad_clip: Real | None = None
    restore_best: bool = True
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: Real = 0.05
    lora_targets: tuple[str, ...] | None = None  # None: the model family's attention + MLP projections
    precision: PrecisionSetting = "fp32"  # fp32 (the paper), bf16 autocast, or auto (bf16 where it is native)
    seed: int = 42
