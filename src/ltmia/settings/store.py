"""How a feature store is extracted (SPEC §4-5): ``ltmia.store`` writes stores with these settings."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

from ltmia.settings.base import PRECISIONS, SEQ_LEN, PrecisionSetting, Settings

MEMORY_BUDGET_BYTES = 2**30
"""Default bound on the extra memory of ``ltmia.signals.extract`` (a sub-batch's logits plus chunk scratch)
and of the classifier's shuffle buffer."""


class StoreSettings(Settings):
    """How to extract. k and L are SPEC §4's; float16 halves the features' size (stats stay float32);
    ``precision`` bf16 runs the models under bf16 autocast with a float32 LM head (``ltmia.signals``).

    ``memory_budget_bytes`` bounds extraction's memory beyond the models (``ltmia.signals.extract``). It
    changes how the work is split, not the numbers, so it is not part of a store's plan: a store can be
    resumed or reused under another budget.
    """

    what: ClassVar[str] = "store settings"

    k: int = 20
    dtype: Literal["float32", "float16"] = "float32"  # the keys of ``ltmia.store.DTYPES``
    shard_size: int = 1024
    batch_size: int = 16
    seq_len: int = SEQ_LEN
    precision: PrecisionSetting = "fp32"  # the models' forward passes (``ltmia.device``); auto: resolved here
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES

    @field_validator("precision", mode="before")
    @classmethod
    def resolved(cls, precision: object) -> object:
        from ltmia.device import resolve_precision  # torch: only when settings are made, not imported

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
        return resolve_precision(str(precision))

    @model_validator(mode="after")
    def check(self) -> StoreSettings:
        if min(self.k, self.shard_size, self.batch_size) < 1 or self.seq_len < 2:
            raise ValueError("k, shard size and batch size must be at least 1 and the sequence length 2")
        if self.memory_budget_bytes < 1:
            raise ValueError(
                f"the memory budget must be a positive number of bytes, got {self.memory_budget_bytes}"
            )
        return self

    def plan(self) -> dict:
        """The settings a store's numbers depend on (all but the memory budget)."""
        return {key: value for key, value in self.record().items() if key != "memory_budget_bytes"}
