"""Does the audit's evidence keep its promises? Realised FDR, FPR and set-level false positives, many draws.

``ltmia audit --non-members`` (``ltmia.audit.nonmembers`` on ``ltmia.evidence``) promises: BH selections
have FDR <= q, an FPR selection picks a non-member with probability <= a, and the set-level test (Holm over
the attacks) rejects a candidate set without members with probability <= alpha. All of it assumes the
non-members are exchangeable with the candidates. This script checks those promises on targets whose
membership is known, by drawing many audits from finished feature stores:

- each draw takes n0 known non-members and n1 candidates (a share pi of members, the rest other
  non-members, disjoint from the n0) from one store and runs the audit's statistics on every attack;
- pi = 0 measures the set test's false-positive rate (and BH's, which is then P(any selection));
  pi = 0.1 and 0.5 measure realised FDR and FPR, the power of each rule, and the set test's power against
  the normal-approximation prediction (``ltmia.evidence.power``) from the store's whole score distributions;
- two shifted nulls: candidates are non-members from the shorter half (by characters), or from the more
  compressible half (zlib), known non-members from all: no member anywhere, yet a distribution shift. They
  show what breaks the test, and whether the report's shift check catches it (it measures token counts, so
  the first shift is caught by construction; the second it must see through the reference loss).

Stores of one corpus hold the same texts in the same rows, so every store draws with its own seed (from
its name): draws with one seed would pick the same texts in every store, and pooled rates would then rest
on far fewer independent draws than they count.

Stores are read, never written: by default every finished store of the study cache
(``~/.cache/ltmia/study/cache/stores``), zoo and SmolLM2 alike. Baselines need no model pass. LT-MIA (the
shipped classifier) is scored only on stores of combos the classifier was not trained on (its
``study.json``), since on the others its train rows are in-sample. Scores are cached in ``--work``.

    .venv/bin/python benchmarks/audit_calibration.py [--stores DIR ...] [--draws 1000] [--work DIR]

Writes ``benchmarks/results/audit_calibration.{json,md,png}`` (the JSON compact, with every store's numbers;
``--render`` redoes .md and .png from it). Intervals: 95%; Wilson for rates of independent draws (set-level
rejections), mean +- 1.96 s / sqrt(R) for per-draw proportions (FDP, FPR).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np
from scipy import stats

from ltmia.evidence import holm, power, rank_test, select

OUT = Path(__file__).parent / "results"
CACHE_STORES = Path("~/.cache/ltmia/study/cache/stores").expanduser()
N0, N1 = 150, 100
SHARES = (0.0, 0.1, 0.5)
FDRS = (0.05, 0.1, 0.2)
FPRS = (0.01, 0.05, 0.1)
ALPHAS = (0.01, 0.05)
LT_MIA = "lt_mia"


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mean_interval(values: np.ndarray) -> dict:
    """Mean of per-draw values with a normal 95% interval (draws are independent)."""
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else 0.0
    return {"mean": mean, "ci": [max(0.0, mean - half), min(1.0, mean + half)], "draws": int(values.size)}


def trained_on() -> set[str]:
    """Store name prefixes ("gpt2--fortunes") of the combos the shipped classifier was trained on."""
    from ltmia.classifier.checkpoint import shipped_dir

    record = json.loads((shipped_dir("zoo") / "study.json").read_text())  # the classifier it measured
    return {entry.removeprefix("zoo:").replace(" x ", "--") for entry in record["trained_on"]}


def store_scores(path: Path, work: Path, with_lt_mia: bool) -> dict:
    """Every attack's score of every row of a finished store (LT-MIA when asked), with labels and the shift
    measures; the scores are cached in ``work`` (by store directory and rows checksum), the cheap text
    measures (characters, zlib-compressed bytes per byte) recomputed."""
    from ltmia.attacks import valid_mean
    from ltmia.evaluation import baseline_scores, lt_mia_scores
    from ltmia.store import Store

    store = Store(path)
    key = store.manifest["rows_file"]["sha256"][:16] + ("-lt" if with_lt_mia else "")
    cached = work / f"{path.name}-{key}.json"
    if cached.exists():
        return {**json.loads(cached.read_text()), **text_measures(store.texts())}
    scores = baseline_scores(store, None).scores
    if with_lt_mia:
        from ltmia.classifier import LTMIA
        from ltmia.classifier.checkpoint import classifier_dir

        classifier = LTMIA.load(classifier_dir("zoo"))
        classifier.micro_batch_size = 128  # CPU: see README
        scores[LT_MIA] = lt_mia_scores(classifier, store, None).scores[LT_MIA]
    stats = store.stats()
    record = {
        "store": str(path),
        "target": store.manifest["models"].get("target"),
        "labels": store.labels.tolist(),
        "scores": {name: values.tolist() for name, values in scores.items()},
        "reference_loss": (-valid_mean(stats.reference_logprob, stats.valid)).tolist(),
        "tokens": stats.valid.sum(-1).tolist(),
    }
    work.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(record))
    return {**record, **text_measures(store.texts())}


def text_measures(texts: list[str]) -> dict[str, list[float]]:
    """Per text: its length in characters and its zlib-compressed size per UTF-8 byte."""
    encoded = [text.encode() for text in texts]
    return {
        "chars": [len(text) for text in texts],
        "zlib_ratio": [len(zlib.compress(data)) / len(data) for data in encoded],
    }


def draw(rng: np.random.Generator, members: np.ndarray, nulls: np.ndarray, share: float):
    """Row indices of one audit: n0 known non-members, n1 candidates (``share`` members), their truth."""
    k = round(share * N1)
    null_rows = rng.choice(nulls, size=N0 + N1 - k, replace=False)
    candidates = np.concatenate([rng.choice(members, size=k, replace=False), null_rows[N0:]])
    return null_rows[:N0], candidates, np.arange(N1) < k


def set_p_values(x: np.ndarray, y: np.ndarray, alternative: str = "greater") -> np.ndarray:
    """(R, n1), (R, n0) -> (R,) p-values of ``ltmia.evidence.rank_test`` for R draws at once.

    rank_test's p-value is scipy's Mann-Whitney U; scipy's batched form costs one call instead of R. The
    first draw is checked against rank_test itself, so the two cannot drift apart.
    """
    p = stats.mannwhitneyu(x, y, alternative=alternative, axis=1).pvalue
    assert np.isclose(p[0], rank_test(x[0], y[0], alternative=alternative).p_value, rtol=1e-9, atol=0)
    return p


def holm_min(p: dict[str, np.ndarray]) -> np.ndarray:
    """Per draw, the global p-value of ``ltmia.evidence.holm`` over the attacks' (R,) p-values."""
    names = list(p)
    return np.array([min(holm({a: float(p[a][r]) for a in names}).values()) for r in range(len(p[names[0]]))])


def shift_p(record: dict, cands: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(R, n1), (R, n0) rows -> (R,) p-values of the audit's shift check: two-sided rank tests of the
    reference loss and the token counts, Holm over the two."""
    measures = {name: np.asarray(record[name], float) for name in ("reference_loss", "tokens")}
    return holm_min({name: set_p_values(v[cands], v[known], "two-sided") for name, v in measures.items()})


def selections(
    values: np.ndarray, cands: np.ndarray, known: np.ndarray, rule: str, level: float
) -> np.ndarray:
    """(N,) scores, (R, n1) and (R, n0) rows -> (R, n1) the audit's selection (``ltmia.evidence.select``)."""
    return np.stack(
        [select(values[c], values[k], rule, level).selected for c, k in zip(cands, known, strict=True)]
    )


def store_seed(seed: int, name: str) -> list[int]:
    """The seed of one store's draws: the run's seed and the store's name (see the module docstring)."""
    return [seed, zlib.crc32(name.encode())]


def audit_draws(record: dict, draws: int, seed: list[int]) -> dict:
    """Per share of members: the FDP, TPR, per-text FPR and set-level p-values of every draw."""
    labels = np.asarray(record["labels"])
    scores = {name: np.asarray(values) for name, values in record["scores"].items()}
    members, nulls = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    out = {}
    for share in SHARES:
        rng = np.random.default_rng([*seed, int(share * 100)])
        rows = [draw(rng, members, nulls, share) for _ in range(draws)]
        known, cands = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        truth = rows[0][2]  # the same in every draw: the first round(share n1) candidates are members
        fdp, tpr, fpr = {}, {}, {}
        for a, values in scores.items():
            for q in FDRS:
                chosen = selections(values, cands, known, "fdr", q)
                fdp[a, q] = (chosen & ~truth).sum(1) / np.maximum(1, chosen.sum(1))
                tpr[a, q] = (chosen & truth).sum(1) / max(1, truth.sum())
            for level in FPRS:
                chosen = selections(values, cands, known, "fpr", level)
                fpr[a, level] = (chosen & ~truth).sum(1) / max(1, (~truth).sum())
        set_p = {a: set_p_values(values[cands], values[known]) for a, values in scores.items()}
        out[share] = {
            "fdp": fdp,
            "tpr": tpr,
            "fpr": fpr,
            "set_p": {**set_p, "holm": holm_min(set_p)},
            "shift_p": shift_p(record, cands, known),
        }
    return out


SHIFTS = {"shorter": "chars", "more_compressible": "zlib_ratio"}
"""Shifted nulls: candidates from the half of the non-members with the lower value of this measure."""


def shifted_draws(record: dict, draws: int, seed: list[int], shift: str) -> dict:
    """A null with a shift: candidates from the lower half of the non-members by ``SHIFTS[shift]``, known
    non-members from all the rest. Set-level p-values per attack and Holm, and the shift check's p-values."""
    labels, measure = np.asarray(record["labels"]), np.asarray(record[SHIFTS[shift]])
    nulls = np.flatnonzero(labels == 0)
    short = nulls[measure[nulls] <= np.median(measure[nulls])]
    scores = {name: np.asarray(values) for name, values in record["scores"].items()}
    rng = np.random.default_rng([*seed, 999, len(shift)])
    cands = np.stack([rng.choice(short, size=N1, replace=False) for _ in range(draws)])
    known = np.stack([rng.choice(np.setdiff1d(nulls, c), size=N0, replace=False) for c in cands])
    set_p = {a: set_p_values(values[cands], values[known]) for a, values in scores.items()}
    return {"set_p": {**set_p, "holm": holm_min(set_p)}, "shift_p": shift_p(record, cands, known)}


def predicted_power(record: dict, share: float, attack: str, alpha: float, seed: list[int]) -> float:
    """The set test's power at (N1, N0) from the whole store: candidates drawn as a share of members, the
    AUC and placement variances estimated on a large resample, then ``ltmia.evidence.power``."""
    labels = np.asarray(record["labels"])
    values = np.asarray(record["scores"][attack])
    members, nulls = values[labels == 1], values[labels == 0]
    rng = np.random.default_rng([*seed, 7])
    n = 4000
    is_member = rng.random(n) < share
    population = np.where(is_member, rng.choice(members, n), rng.choice(nulls, n))
    test = rank_test(population, nulls)
    return power(N1, N0, test.auc, test.var10, test.var01, alpha)


def summarise(
    results: dict[str, dict], shifted: dict[str, dict], records: dict[str, dict], seed: int
) -> dict:
    """Per store and pooled: realised FDR / FPR / set-level rejection rates with intervals."""
    summary: dict = {"stores": {}, "pooled": {}}
    pooled: dict = {}
    for name, by_share in results.items():
        entry: dict = {}
        for share, draws in by_share.items():
            tag = f"members_{share:g}"
            block: dict = {"fdr": {}, "fpr": {}, "set_test": {}}
            for (a, q), fdp in draws["fdp"].items():
                block["fdr"].setdefault(a, {})[str(q)] = {
                    "realised_fdr": mean_interval(fdp),
                    "tpr": float(draws["tpr"][a, q].mean()),
                }
                pooled.setdefault(("fdr", tag, a, q), []).append(fdp)
                pooled.setdefault(("tpr", tag, a, q), []).append(draws["tpr"][a, q])
            for (a, level), values in draws["fpr"].items():
                block["fpr"].setdefault(a, {})[str(level)] = mean_interval(values)
                pooled.setdefault(("fpr", tag, a, level), []).append(values)
            for a, ps in draws["set_p"].items():
                for alpha in ALPHAS:
                    hits = int((ps <= alpha).sum())
                    rate = {"rate": hits / ps.size, "ci": wilson(hits, ps.size), "draws": int(ps.size)}
                    if share > 0 and a != "holm":
                        rate["predicted"] = predicted_power(
                            records[name], share, a, alpha, store_seed(seed, name)
                        )
                    block["set_test"].setdefault(a, {})[str(alpha)] = rate
                    pooled.setdefault(("set", tag, a, alpha), []).append(ps <= alpha)
            alarms = draws["shift_p"] <= 0.05
            block["shift_check_alarms_0.05"] = {
                "rate": float(alarms.mean()),
                "ci": wilson(int(alarms.sum()), alarms.size),
            }
            pooled.setdefault(("shift", tag, "check", 0.05), []).append(alarms)
            entry[tag] = block
        for kind, shift in shifted[name].items():
            entry[f"shifted_null_{kind}"] = {
                "set_test_0.05": {
                    a: {"rate": float((ps <= 0.05).mean()), "ci": wilson(int((ps <= 0.05).sum()), ps.size)}
                    for a, ps in shift["set_p"].items()
                },
                "shift_check_alarms_0.05": float((shift["shift_p"] <= 0.05).mean()),
            }
            for a, ps in shift["set_p"].items():
                pooled.setdefault(("set", f"shifted_{kind}", a, 0.05), []).append(ps <= 0.05)
            pooled.setdefault(("shift", f"shifted_{kind}", "check", 0.05), []).append(
                shift["shift_p"] <= 0.05
            )
        summary["stores"][name] = entry
    for (kind, tag, a, level), parts in pooled.items():
        values = np.concatenate(parts).astype(float)
        if kind in ("fdr", "fpr", "tpr"):
            rate = mean_interval(values)
        else:
            hits = int(values.sum())
            rate = {"rate": hits / values.size, "ci": wilson(hits, values.size), "draws": int(values.size)}
        rate["stores"] = len(parts)
        summary["pooled"].setdefault(kind, {}).setdefault(tag, {}).setdefault(a, {})[str(level)] = rate
    return summary


def worst_cells(summary: dict) -> str:
    """Per store and attack: how many (store, attack, share, q) cells have a realised FDR whose interval
    lies above q, and the highest realised FDR of all cells."""
    cells = [
        (by_q[q]["realised_fdr"], float(q), name, a, tag)
        for name, entry in summary["stores"].items()
        for tag in ("members_0", "members_0.1", "members_0.5")
        for a, by_q in entry[tag]["fdr"].items()
        for q in by_q
    ]
    above = sum(rate["ci"][0] > q for rate, q, *_ in cells)
    rate, q, name, a, tag = max(cells, key=lambda cell: cell[0]["mean"] - cell[1])
    return (
        f"Per store: {above} of {len(cells)} (store, attack, share, q) cells have a realised FDR whose 95% "
        f"interval lies above q; the closest to q is {a} on {name} ({tag.replace('_', ' ')}, q = {q}): "
        f"{fmt(rate)}."
    )


def ordered(attacks) -> list[str]:
    """Attacks in a fixed order: the baselines as registered, then LT-MIA, then Holm's combination."""
    order = {name: i for i, name in enumerate(["loss", "zlib", "min_k", "min_k_pp", "ref_loss", "wbc"])}
    return sorted(attacks, key=lambda a: (a == "holm", a == LT_MIA, order.get(a, 99), a))


def fmt(record: dict, key: str = "mean") -> str:
    low, high = record["ci"]
    return f"{record[key]:.3f} [{low:.3f}, {high:.3f}]"


def markdown(summary: dict, meta: dict) -> str:
    """The calibration tables: pooled realised FDR / FPR / set-level rates, then the shift demonstration."""
    pooled = summary["pooled"]
    lines = [
        "# Audit evidence: calibration on targets with known membership",
        "",
        f"{meta['draws']} draws per store and setting; each draw: {N0} known non-members, {N1} candidates "
        f"(a share of members, the rest other non-members). {len(meta['stores'])} stores of the study cache "
        f"({meta['kinds']}); LT-MIA (the shipped classifier) on the {len(meta['lt_mia_stores'])} stores of "
        "combos it was not trained on, the baselines on all. 95% intervals. "
        f"Command: `{meta['command']}` ({meta['seconds']:.0f} s). Stores: `audit_calibration.json` (meta).",
        "",
        "## Realised FDR of BH selections (nominal q), pooled over stores",
        "",
        "| attack | members | " + " | ".join(f"FDR at q={q}" for q in FDRS) + " | members found at q=0.1 |",
        "|---|---:|" + "---:|" * (len(FDRS) + 1),
    ]
    for tag in ("members_0", "members_0.1", "members_0.5"):
        for a in ordered(pooled["fdr"][tag]):
            by_q = pooled["fdr"][tag][a]
            cells = [fmt(by_q[str(q)]) for q in FDRS]
            cells.append(f"{pooled['tpr'][tag][a]['0.1']['mean']:.3f}" if tag != "members_0" else "-")
            lines.append(f"| {a} | {tag.split('_')[1]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "With no members (share 0) every selection is false, so the realised FDR is P(any selection). BH "
        "promises FDR <= q x (share of non-members among the candidates): q, 0.9 q, 0.5 q here; p-values "
        f"from {N0} non-members are multiples of 1/{N0 + 1}, which keeps the realised FDR lower still.",
        "",
        worst_cells(summary),
        "",
        "## Realised per-text FPR of fixed-FPR selections, pooled (share of members 0.5)",
        "",
        "| attack | " + " | ".join(f"FPR at {a}" for a in FPRS) + " |",
        "|---|" + "---:|" * len(FPRS),
    ]
    for a in ordered(pooled["fpr"]["members_0.5"]):
        by_level = pooled["fpr"]["members_0.5"][a]
        lines.append(f"| {a} | " + " | ".join(fmt(by_level[str(x)]) for x in FPRS) + " |")
    lines += [
        "",
        "## Set-level test: rejection rate (false-positive rate without members, power with them), pooled",
        "",
        "| attack | " + " | ".join(f"no members, alpha={x}" for x in ALPHAS) + " | 10% members, 0.05 "
        "| 50% members, 0.05 | shift: shorter, 0.05 | shift: more compressible, 0.05 |",
        "|---|" + "---:|" * (len(ALPHAS) + 4),
    ]
    for a in ordered(pooled["set"]["members_0"]):
        by_alpha = pooled["set"]["members_0"][a]
        cells = [fmt(by_alpha[str(x)], "rate") for x in ALPHAS]
        cells += [fmt(pooled["set"][tag][a]["0.05"], "rate") for tag in ("members_0.1", "members_0.5")]
        cells += [fmt(pooled["set"][f"shifted_{kind}"][a]["0.05"], "rate") for kind in SHIFTS]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    shift = pooled["shift"]
    lines += [
        "",
        "holm: Holm's combination over the store's attacks (the audit's verdict).",
        "",
        "## Shift check alarm rate at 0.05 (the report's: reference loss and token counts, two-sided, Holm)",
        "",
        f"- no members, no shift: {fmt(shift['members_0']['check']['0.05'], 'rate')}",
        f"- 50% members, no shift: {fmt(shift['members_0.5']['check']['0.05'], 'rate')} (the reference "
        "never saw the members, so membership alone should not raise it)",
        "- shifted null, candidates from the shorter half (the check counts tokens: caught by construction): "
        f"{fmt(shift['shifted_shorter']['check']['0.05'], 'rate')}",
        "- shifted null, candidates from the more compressible half (seen only through the reference loss): "
        f"{fmt(shift['shifted_more_compressible']['check']['0.05'], 'rate')}",
        "",
        "## Set-level power: realised vs predicted (normal approximation), alpha 0.05, per store",
        "",
        "| store | lt_mia, 10% members | lt_mia, 50% members | ref_loss, 10% | ref_loss, 50% |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in summary["stores"].items():
        if LT_MIA not in entry["members_0.1"]["set_test"]:
            continue
        cells = [
            f"{rate['rate']:.3f} / {rate['predicted']:.3f}"
            for a in (LT_MIA, "ref_loss")
            for tag in ("members_0.1", "members_0.5")
            for rate in [entry[tag]["set_test"][a]["0.05"]]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    gaps = [
        abs(rate["rate"] - rate["predicted"])
        for entry in summary["stores"].values()
        for tag in ("members_0.1", "members_0.5")
        for a, by_alpha in entry[tag]["set_test"].items()
        if a != "holm"
        for rate in [by_alpha["0.05"]]
    ]
    lines += [
        "",
        "Cells: realised / predicted rejection rate of the one-sided U test at 0.05. Over all "
        f"{len(gaps)} (store, attack, share) cells: mean |realised - predicted| = {np.mean(gaps):.3f}, "
        f"largest {max(gaps):.3f} (the prediction reads the store's whole score distributions; the audit "
        "reads the candidates at hand, so its planning figure is noisier).",
    ]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Realised FDR vs q (share 0.5), set-level FPR at alpha 0.05 per attack, predicted vs realised power."""
    from matplotlib.figure import Figure

    pooled = summary["pooled"]
    fig = Figure(figsize=(14, 4.2), dpi=110)
    ax_fdr, ax_set, ax_power = fig.subplots(1, 3)
    for a, by_q in pooled["fdr"]["members_0.5"].items():
        means = [by_q[str(q)]["mean"] for q in FDRS]
        errors = np.array(
            [[m - by_q[str(q)]["ci"][0], by_q[str(q)]["ci"][1] - m] for q, m in zip(FDRS, means, strict=True)]
        )
        ax_fdr.errorbar(FDRS, means, yerr=errors.T, marker="o", ms=3, capsize=2, lw=1, label=a)
    ax_fdr.plot([0, 0.22], [0, 0.22], color="grey", ls=":", lw=1, label="q")
    ax_fdr.plot([0, 0.22], [0, 0.11], color="grey", ls="--", lw=1, label="BH bound: q x 50% non-members")
    ax_fdr.set(xlabel="nominal FDR q", ylabel="realised FDR (50% members)", title="BH selections")
    ax_fdr.legend(fontsize=6)
    names = list(pooled["set"]["members_0"])
    rates = [pooled["set"]["members_0"][a]["0.05"] for a in names]
    y = np.arange(len(names))
    ax_set.errorbar(
        [r["rate"] for r in rates],
        y,
        xerr=np.array([[r["rate"] - r["ci"][0], r["ci"][1] - r["rate"]] for r in rates]).T,
        fmt="o",
        capsize=2,
    )
    ax_set.axvline(0.05, color="grey", ls=":", lw=1)
    ax_set.set_xlim(0, 0.1)
    ax_set.set_yticks(y, names, fontsize=7)
    ax_set.set(xlabel="rejection rate without members (alpha 0.05)", title="set-level false positives")
    points = [
        (rate["predicted"], rate["rate"])
        for entry in summary["stores"].values()
        for tag in ("members_0.1", "members_0.5")
        for a, by_alpha in entry[tag]["set_test"].items()
        if a != "holm"
        for rate in [by_alpha["0.05"]]
    ]
    ax_power.scatter(*zip(*points, strict=True), s=6, alpha=0.6)
    ax_power.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax_power.set(xlabel="predicted power", ylabel="realised power", title="set-level power (alpha 0.05)")
    fig.tight_layout()
    fig.savefig(path)


def store_kinds(names: list[str], lt_stores: list[str]) -> str:
    """E.g. "24 zoo stores of the classifier's training combos, 8 held-out zoo, 11 SmolLM2"."""
    real = {"SmolLM2-135M": "smollm2", "Gemma-3-270M": "gemma3"}
    counts = {model: sum(name.startswith(prefix) for name in names) for model, prefix in real.items()}
    held_out = [name for name in names if name in lt_stores and not name.startswith(tuple(real.values()))]
    trained = len(names) - sum(counts.values()) - len(held_out)
    targets = ", ".join(f"{n} {model}" for model, n in counts.items() if n)
    return (
        f"{trained} zoo stores of the classifier's training combos, {len(held_out)} held-out zoo, "
        f"{targets or 'no'} targets fine-tuned from real pretrained LMs"
    )


def rounded(value: object, digits: int = 4) -> object:
    """JSON-ready ``value`` with floats rounded to ``digits`` decimals (the draws resolve ~1e-3)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", nargs="*", type=Path, help="store directories (default: the study cache)")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ltmia-audit-calibration"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true", help="only redo .md and .png from the .json")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((args.out / "audit_calibration.json").read_text())
        saved["meta"]["kinds"] = store_kinds(saved["meta"]["stores"], saved["meta"]["lt_mia_stores"])
        (args.out / "audit_calibration.md").write_text(markdown(saved, saved["meta"]))
        plot(saved, args.out / "audit_calibration.png")
        return
    started = time.perf_counter()
    stores = args.stores or sorted(p.parent for p in CACHE_STORES.glob("*/manifest.json"))
    in_sample = trained_on()
    records, results, shifted, lt_stores = {}, {}, {}, []
    for path in stores:
        name = path.name  # combo-key: several stores (recipes) may share a combo
        with_lt_mia = name.rsplit("-", 1)[0] not in in_sample
        record = store_scores(path, args.work, with_lt_mia)
        if with_lt_mia:
            lt_stores.append(name)
        labels = np.asarray(record["labels"])
        if min((labels == 0).sum() - N0 - N1, (labels == 1).sum() - N1) < 0:
            print(f"skip {name}: too few rows for {N0} + {N1}")
            continue
        records[name] = record
        seed = store_seed(args.seed, name)
        results[name] = audit_draws(record, args.draws, seed)
        shifted[name] = {kind: shifted_draws(record, args.draws, seed, kind) for kind in SHIFTS}
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarise(results, shifted, records, args.seed)
    meta = {
        "draws": args.draws,
        "n0": N0,
        "n1": N1,
        "seed": args.seed,
        "stores": list(records),
        "kinds": store_kinds(list(records), lt_stores),
        "lt_mia_stores": [name for name in lt_stores if name in records],
        "store_paths": {name: record["store"] for name, record in records.items()},
        "command": "python benchmarks/audit_calibration.py"
        + (f" --draws {args.draws}" if args.draws != 1000 else ""),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    record = rounded({"meta": meta, **summary})
    (args.out / "audit_calibration.json").write_text(json.dumps(record, separators=(",", ":")))
    (args.out / "audit_calibration.md").write_text(markdown(summary, meta))
    plot(summary, args.out / "audit_calibration.png")
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
