"""Attacks that cost more than the shared pass (SPEC §5 covers the free ones), chosen by name from
`COSTLY_ATTACKS`; higher score = more likely member.

The seven SPEC §5 baselines read the store's token statistics and cost nothing. The attacks here need the
models again: a pass over the text behind a prefix (ReCaLL, Con-ReCall), over altered texts (lowercase, PAC,
neighbourhood), sampled continuations (SaMIA) or a backward pass (GradNorm). So they are kept apart from
``ltmia.attacks.ATTACKS``, which stays the default everywhere, and each declares its `Cost` so a caller can
print and budget it before loading a model.

A costly attack is ``fn(models, texts, settings) -> (N,) float64``: ``models`` is the loaded target /
reference pair with the store's encoding (``passes.Models``, shared by every costly attack of a run, which
also caches the target's plain pass), ``settings`` the attack's own frozen dataclass whose defaults follow its
paper. Fields an attack needs from outside (prefix texts, reference-corpus counts) are plain data in those
settings; ``ltmia.costly_scores`` resolves them from a store and a corpus. One small module per attack
registers itself with ``@costly_attack(...)``; call them through `costly_score`.
"""

# Importing the attack modules registers them, in listing order (prefix, calibration, perturbation,
# sampling, gradient); each builds on ``ltmia.attacks.costly.base``.
# isort: off
from ltmia.attacks.costly import recall, con_recall, dc_pdd, lowercase, pac
from ltmia.attacks.costly import neighbourhood, samia, gradnorm

# isort: on
from ltmia.attacks.costly.base import (
    COSTLY_ATTACKS,
    PLAIN_PASS,
    Cost,
    CostlyAttack,
    Scorer,
    costly_attack,
    costly_score,
)

__all__ = [
    "COSTLY_ATTACKS",
    "PLAIN_PASS",
    "Cost",
    "CostlyAttack",
    "Scorer",
    "con_recall",
    "costly_attack",
    "costly_score",
    "dc_pdd",
    "gradnorm",
    "lowercase",
    "neighbourhood",
    "pac",
    "recall",
    "samia",
]
