"""The costly attacks' registry, their `Cost` and the call that checks their scores (see the package
docstring). Kept apart from the package's ``__init__``, which registers the attacks by importing their
modules, so that each attack module imports this one and nothing imports back into a half-initialised package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ltmia.errors import InputError
from ltmia.registry import Registry


@dataclass(frozen=True)
class Cost:
    """Work per text beyond the shared pass, which the store already holds (so it is free).

    ``forward_passes`` counts model passes over a text-sized input (target and reference alike); some of them
    read up to ``context_tokens`` tokens of prefix in front of the text (a total over the text's passes, an
    upper bound); ``generated_tokens`` are sampled one at a time with a cache; ``backward_passes`` need
    gradients. ``plain_pass``: the attack also reads the target's plain pass over the text, which the
    store does not keep (it holds log-probs, not token ids) and a run computes once for all its attacks
    (`PLAIN_PASS`). ``setup`` names one-off work per run (e.g. counting tokens of a reference corpus).
    """

    forward_passes: int = 0
    context_tokens: int = 0
    generated_tokens: int = 0
    backward_passes: int = 0
    plain_pass: bool = False
    setup: str = ""

    def shared_passes(self, seq_len: int) -> float:
        """A rough price in shared passes (target + reference over L tokens): tokens read, with a backward
        pass counted as two forward passes and a generated token as one token read. Attention's quadratic
        term and small-batch generation are ignored, so long prefixes and sampling cost more than this."""
        tokens = (self.forward_passes + 2 * self.backward_passes) * seq_len
        return (tokens + self.context_tokens + self.generated_tokens) / (2 * seq_len)

    def describe(self) -> str:
        parts = []
        if self.forward_passes:
            parts.append(f"{self.forward_passes} forward pass{'es' * (self.forward_passes != 1)}")
        if self.context_tokens:
            parts.append(f"<= {self.context_tokens} prefix tokens")
        if self.generated_tokens:
            parts.append(f"<= {self.generated_tokens} generated tokens")
        if self.backward_passes:
            parts.append(f"{self.backward_passes} backward pass{'es' * (self.backward_passes != 1)}")
        text = ", ".join(parts) or "no pass of its own"
        shared = " + the run's plain pass" if self.plain_pass else ""
        return f"{text} per text{shared}" + (f"; once per run: {self.setup}" if self.setup else "")


PLAIN_PASS = Cost(forward_passes=1)
"""The target's plain pass: one pass per text, computed once per run, shared by the attacks that read it."""


Scorer = Callable[..., np.ndarray]


@dataclass(frozen=True)
class CostlyAttack:
    """A registered costly attack: its scorer, settings class (defaults = the paper's), cost and source."""

    name: str
    score: Scorer
    settings: type
    cost: Callable[[Any, int], Cost]  # (settings, L) -> Cost
    source: str

    def make_settings(self, **params: object) -> Any:
        """The attack's settings with ``params`` overriding defaults; an unknown key is an InputError."""
        known = {f.name for f in fields(self.settings)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(
                f"{self.name} has no setting {', '.join(unknown)}; its settings: {', '.join(sorted(known))}"
            )
        return self.settings(**params)


COSTLY_ATTACKS: Registry[CostlyAttack] = Registry("costly attack")


def costly_attack(
    name: str, settings: type, cost: Callable[[Any, int], Cost], source: str
) -> Callable[[Scorer], Scorer]:
    """Decorator: register ``fn(models, texts, settings)`` as costly attack ``name``."""

    def add(score: Scorer) -> Scorer:
        COSTLY_ATTACKS.register(name)(CostlyAttack(name, score, settings, cost, source))
        return score

    return add


def costly_score(name: str, models, texts: Sequence[str], settings: object | None = None) -> np.ndarray:
    """Scores of costly attack ``name`` for N texts: (N,) float64 (default settings when none are given)."""
    attack = COSTLY_ATTACKS.get(name)
    if not texts:
        raise InputError("no texts to score; pass at least one non-empty text")
    settings = attack.make_settings() if settings is None else settings
    if not isinstance(settings, attack.settings):
        raise TypeError(f"{name} takes {attack.settings.__name__}, not {type(settings).__name__}")
    values = np.asarray(attack.score(models, list(texts), settings), dtype=np.float64)
    if values.shape != (len(texts),):
        raise RuntimeError(f"{name} returned shape {values.shape} for {len(texts)} texts")
    return values
