"""What known non-members add to an audit: per-text p-values, a selection at an error rate, a set verdict.

Given texts that certainly were not trained on (``--non-members``), every attack scores them in the same
extraction as the candidates, and ``ltmia.evidence`` turns each attack's scores into

- per candidate: a p-value against the non-members (``p_<attack>`` in the score table) and, for the attack
  chosen beforehand (``EvidenceSettings.attack``, LT-MIA by default), its BH-adjusted p-value and whether it
  is selected at the chosen false discovery rate (or false-positive rate);
- for the set: a one-sided rank test per attack and Holm's combination across attacks, with AUC effect sizes
  and the number of candidates a test of the wanted power would need;
- a shift check: the same rank test, two-sided, on what the *reference* model makes of both sets (its mean
  per-token loss, and the texts' token counts). The reference never saw the fine-tuning data, so a
  difference there is a distribution shift between the sets, which the tests above would read as
  membership (``ASSUMPTIONS``).

Shapes: scores (n1 + n0,) in store row order, candidates first; per-candidate arrays (n1,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ltmia.attacks import ATTACKS, valid_mean
from ltmia.audit.inputs import STDIN, Candidates, candidates, read_texts
from ltmia.errors import InputError
from ltmia.evaluation import LT_MIA, Scored
from ltmia.evidence import RankTest, Selection, bh_adjust, holm, n_needed, p_values, rank_test, select
from ltmia.tokenstats import TokenStats

MIN_NON_MEMBERS = 20
"""Fewer known non-members cannot give a p-value below 1 / 21 < 0.05: nothing could ever be selected."""

ASSUMPTIONS = (
    "The p-values and the set-level test assume that the known non-members come from the same distribution "
    "as the candidates (same source, period, topic, length and style), so that a candidate the model was not "
    "trained on is exchangeable with them. Anything else that tells the two sets apart - a distribution "
    "shift - is detected as membership: texts written later, by other authors or cleaned differently score "
    "differently whatever the training. The shift check asks the reference model, which never saw the "
    "fine-tuning data, whether it tells the sets apart; if it does, the verdict may be shift, not "
    "membership. "
    "Passing the check does not prove the absence of a shift. The FDR guarantee holds for the attack chosen "
    "before looking at the results; choosing afterwards the attack that selects the most texts voids it."
)


@dataclass
class EvidenceSettings:
    """How to weigh candidates against known non-members. ``fdr``: Benjamini–Hochberg level of the
    selection, unless ``fpr`` is given (then each non-member candidate is selected with probability at most
    ``fpr``); ``alpha``: level of the set-level test; ``power``: the power ``n_needed`` plans for;
    ``attack``: the attack whose p-values make the selection, fixed before looking."""

    fdr: float = 0.05
    fpr: float | None = None
    alpha: float = 0.05
    power: float = 0.8
    attack: str = LT_MIA

    def __post_init__(self) -> None:
        for name in ("fdr", "fpr", "alpha"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise InputError(f"--{name} must be between 0 and 1 (e.g. 0.05), not {value}")
        if not 0.5 <= self.power < 1:
            raise InputError(f"the planned power must be in [0.5, 1), not {self.power}")
        if self.attack != LT_MIA and self.attack not in ATTACKS:
            raise InputError(
                f"unknown attack {self.attack!r}; choose {LT_MIA} or one of: {', '.join(ATTACKS)}"
            )

    @property
    def rule(self) -> Literal["fdr", "fpr"]:
        return "fpr" if self.fpr is not None else "fdr"

    @property
    def level(self) -> float:
        return self.fpr if self.fpr is not None else self.fdr


def evidence_settings(
    fdr: float | None = None,
    fpr: float | None = None,
    alpha: float = 0.05,
    attack: str = LT_MIA,
    *,
    with_non_members: bool,
) -> EvidenceSettings:
    """`EvidenceSettings` from ``ltmia audit``'s options: one error rate (``fdr`` default 0.05, or ``fpr``),
    and no option that weighs candidates against non-members unless there are some."""
    if fdr is not None and fpr is not None:
        raise InputError("give --fdr or --fpr, not both: the selection controls one error rate")
    if not with_non_members and (fdr, fpr, alpha, attack) != (None, None, 0.05, LT_MIA):
        raise InputError("--fdr, --fpr, --alpha and --attack weigh candidates against --non-members; give it")
    return EvidenceSettings(fdr=0.05 if fdr is None else fdr, fpr=fpr, alpha=alpha, attack=attack)


def read_non_members(
    source: str | Path,
    tokenizer,
    column: str | None = None,
    fmt: str | None = None,
    *,
    texts_source: str | Path | None = None,
) -> Candidates:
    """The known non-members, read and flagged like the candidates (``ltmia.audit.inputs``).

    ``column`` and ``fmt`` are the candidates' ``--column`` and ``--format``: the column is not passed to a
    .txt file (it has none), the format only to stdin (a file's suffix says its own). A row without text
    (the readers' ``""`` placeholder: a missing or null value) is skipped and listed by its input position,
    exactly as a candidate's: ``skipped`` goes to ``audit.json`` (``evidence.non_member_texts``), and the
    scored non-members keep their input positions (``index``). Fewer than `MIN_NON_MEMBERS` scoreable texts,
    or stdin for both sets, is an InputError.
    """
    stdin = str(source) == STDIN
    if stdin and str(texts_source) == STDIN:
        raise InputError("--texts and --non-members cannot both be - (stdin); give one of them as a file")
    if column is not None and not stdin and Path(source).suffix.lower() == ".txt":
        column = None
    raw = read_texts(source, column, fmt if stdin else None)
    scoreable = sum(bool(text.strip()) for text in raw)  # counted first: "all empty" names the non-members
    if scoreable < MIN_NON_MEMBERS:
        raise InputError(
            f"{source} has {scoreable} non-empty texts in {len(raw)} rows; give at least {MIN_NON_MEMBERS} "
            f"known non-members (with n of them no p-value is below 1/(n+1))"
        )
    return candidates(raw, tokenizer)


def take(scored: Scored, rows: slice) -> Scored:
    """The rows ``rows`` of a `Scored` (every attack's scores alike)."""
    return Scored(
        scored.name,
        scored.labels[rows],
        {attack: values[rows] for attack, values in scored.scores.items()},
        scored.rows[rows],
    )


@dataclass
class Evidence:
    """The evidence of one audit: ``record`` (audit.json's ``evidence``), ``columns`` (per candidate, (n1,)
    arrays that become score-table columns) and the non-members' own scores."""

    record: dict
    columns: dict[str, np.ndarray]
    non_member_scores: dict[str, np.ndarray]


def shift_check(stats: TokenStats, n1: int, alpha: float) -> dict:
    """Two-sided rank tests of the reference model's mean per-token loss and of the token counts, candidates
    (the first ``n1`` rows of ``stats``) against non-members; Holm over the two. (N, L-1) stats -> dict."""
    measures = {
        "reference_loss": (-valid_mean(stats.reference_logprob, stats.valid)).numpy(),
        "tokens": stats.valid.sum(-1).double().numpy(),
    }
    tests = {name: rank_test(v[:n1], v[n1:], alternative="two-sided") for name, v in measures.items()}
    adjusted = holm({name: test.p_value for name, test in tests.items()})
    record = {
        name: {
            **tests[name].to_dict(),
            "p_holm": adjusted[name],
            "mean_candidates": float(values[:n1].mean()),
            "mean_non_members": float(values[n1:].mean()),
        }
        for name, values in measures.items()
    }
    return {"shift_detected": min(adjusted.values()) <= alpha, "alpha": alpha, **record}


def set_test(tests: dict[str, RankTest], settings: EvidenceSettings) -> dict:
    """Holm across the attacks' one-sided rank tests: per-attack adjusted p-values, the global p-value, the
    verdict, and the candidates needed for ``settings.power`` (each attack at alpha / k: the combined test
    rejects as soon as one attack passes that, so its power is at least the best attack's)."""
    adjusted = holm({name: test.p_value for name, test in tests.items()})
    level = settings.alpha / len(tests)
    attacks = {
        name: {
            **test.to_dict(),
            "p_holm": adjusted[name],
            "n_needed": n_needed(test, level, settings.power),
            "n_needed_balanced": n_needed(test, level, settings.power, balanced=True),
        }
        for name, test in tests.items()
    }
    needed = [entry["n_needed"] for entry in attacks.values() if entry["n_needed"] is not None]
    p = min(adjusted.values())
    return {
        "method": f"one-sided Mann-Whitney U per attack, Holm across {len(tests)} attacks",
        "alpha": settings.alpha,
        "p_value": p,
        "reject": p <= settings.alpha,
        "power": settings.power,
        "n_needed": min(needed) if needed else None,
        "attacks": attacks,
    }


def verdict(test: dict, shift: dict, n1: int) -> str:
    """The set-level verdict as one sentence (plus a caveat when the shift check fires)."""
    p, alpha = test["p_value"], test["alpha"]
    if test["reject"]:
        text = (
            f"member-like: the {n1} candidates score higher than the known non-members "
            f"(p = {p:.2g} < {alpha}; {test['method']})"
        )
    else:
        needed = test["n_needed"]
        plan = (
            f"; about {needed} candidates would give {test['power']:.0%} power at the observed effect"
            if needed is not None and needed > n1
            else ""
        )
        text = f"not shown: the candidates do not score significantly higher (p = {p:.2g} >= {alpha}){plan}"
    if shift["shift_detected"]:
        text += (
            "; CAUTION: the reference model also tells the sets apart (shift check), so this may reflect a "
            "distribution shift rather than membership"
        )
    return text


def selection_sentence(selection: Selection, attack: str, n1: int, n0: int) -> str:
    """E.g. "12 of 60 candidates selected at FDR 0.05 by lt_mia (p <= 0.0099)", with the reason when the
    number of non-members limits it."""
    rule = "FDR" if selection.rule == "fdr" else "FPR"
    text = f"{selection.n_selected} of {n1} candidates selected at {rule} {selection.level:.3g} by {attack}"
    smallest = 1 / (n0 + 1)
    if selection.n_selected:
        text += f" (p <= {selection.p_cutoff:.3g})"
    if not selection.attainable:
        text += f"; unattainable with {n0} non-members (the smallest p-value is 1/(n0+1) = {smallest:.3g})"
    elif selection.rule == "fdr" and not selection.n_selected:
        at_least = math.ceil(n1 * smallest / selection.level - 1e-9)
        text += (
            f"; with {n0} non-members BH selects only if at least {at_least} candidates reach the smallest "
            f"p-value ({smallest:.3g}); more non-members make p-values finer"
        )
    return text


def evidence(
    scored: Scored, n1: int, stats: TokenStats, settings: EvidenceSettings, overlap: int = 0
) -> Evidence:
    """Scores of the n1 candidates followed by the n0 non-members (every attack; LT-MIA as logits), their
    token stats (N, L-1) -> the evidence (module docstring). ``overlap``: candidates that are also among
    the non-members (reported; a contradiction in the user's sets)."""
    cands, nulls = take(scored, slice(0, n1)), take(scored, slice(n1, None))
    attacks = list(scored.scores)
    p = {name: p_values(cands.scores[name], nulls.scores[name]) for name in attacks}
    rule, level = settings.rule, settings.level
    selections = {name: select(cands.scores[name], nulls.scores[name], rule, level) for name in attacks}
    tests = {name: rank_test(cands.scores[name], nulls.scores[name]) for name in attacks}
    test = set_test(tests, settings)
    shift = shift_check(stats, n1, settings.alpha)
    chosen = selections[settings.attack]
    selection = {"attack": settings.attack, **chosen.to_dict()}
    if settings.attack == LT_MIA and chosen.score_threshold is not None:
        selection["lt_mia_score_threshold"] = float(1 / (1 + np.exp(-chosen.score_threshold)))
    if (cands.labels >= 0).all():  # labelled candidates: how the selection fared
        selection["labelled_non_members_selected"] = int((chosen.selected & (cands.labels == 0)).sum())
    n0 = len(nulls.labels)
    record = {
        "selected": selection_sentence(chosen, settings.attack, n1, len(nulls.labels)),
        "verdict": verdict(test, shift, n1),
        "non_members": n0,
        "candidates": n1,
        "candidates_also_in_non_members": overlap,
        "smallest_p": 1 / (n0 + 1),
        "selection": selection,
        "set_test": test,
        "shift_check": shift,
        "selections_by_attack": {
            name: {key: value for key, value in s.to_dict().items() if key in ("n_selected", "p_cutoff")}
            for name, s in selections.items()
        },
        "assumptions": ASSUMPTIONS,
        "settings": {"rule": rule, "level": level, "alpha": settings.alpha, "attack": settings.attack},
    }
    columns = {f"p_{name}": values for name, values in p.items()}
    columns["q_value"] = bh_adjust(p[settings.attack])
    columns["selected"] = chosen.selected
    return Evidence(record, columns, nulls.scores)
