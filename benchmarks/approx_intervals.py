"""How the approximate intervals (``ltmia.approx_intervals``) compare with bootstrap ones (JSON, not a test).

The committed tables rendered before ltmia had intervals get approximate ones, from each number and its class
counts alone. This measures them against the stratified bootstrap (``ltmia.metrics``, 1,000 resamples, seed
0) wherever both can be had:

- every (group, attack, metric) of a committed ``results/*/results.json`` that has bootstrap intervals
  (offline-full-heldout, costly-zoo): the approximate interval is computed from the same record's numbers;
- optionally (``--scores``, default ``~/.cache/ltmia/study/cache/scores`` when it exists; read only) every
  per-combo score file of a study cache: bootstrap and approximate intervals from the same scores.

Per source, metric and non-member count: the width ratio approximate / bootstrap (median, min, max), how
often the approximate interval contains the bootstrap interval's low end, its high end, both, and the
point; how often it has zero width where the bootstrap's has not. Per committed table and metric: whether
the bold rule (``clear_best``) picks the same cell with either interval.

    PYTHONPATH=src python benchmarks/approx_intervals.py [--scores DIR | --no-scores]

Writes ``benchmarks/results/approx_intervals.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from ltmia.approx_intervals import approximate
from ltmia.evaluation import Scored, clear_best, unmeasurable
from ltmia.metrics import METRICS, MetricResult, evaluate_bootstrap

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results"
DEFAULT_SCORES = Path.home() / ".cache" / "ltmia" / "study" / "cache" / "scores"


def stripped(result: MetricResult) -> MetricResult:
    """``result`` as a table without intervals would give it: the numbers and the class counts."""
    return replace(result, auc_ci=None, tpr_at_1pct_ci=None, tpr_at_01pct_ci=None, interval_method=None)


def cases_of(source: str, group: str, results: dict[str, MetricResult]) -> list[dict]:
    """One record per attack and measurable metric with a bootstrap interval."""
    out = []
    for attack, boot in results.items():
        approx = approximate(stripped(boot))
        for metric in METRICS:
            if unmeasurable(boot, metric) or boot.interval(metric) is None:
                continue
            (b_lo, b_hi), (a_lo, a_hi) = boot.interval(metric), approx.interval(metric)
            out.append(
                {
                    "source": source,
                    "group": group,
                    "attack": attack,
                    "metric": metric,
                    "n_members": boot.n_members,
                    "n_nonmembers": boot.n_nonmembers,
                    "point": getattr(boot, metric),
                    "bootstrap": [b_lo, b_hi],
                    "approximate": [a_lo, a_hi],
                }
            )
    return out


def committed() -> tuple[list[dict], list[dict]]:
    """Cases and bold-rule comparisons of every committed results.json with bootstrap intervals."""
    cases, bold = [], []
    for path in sorted((ROOT / "results").glob("*/results.json")):
        record = json.loads(path.read_text())
        for group, entry in sorted(record["groups"].items()):
            if "bootstrap" not in entry:
                continue
            results = {a: MetricResult.from_dict(r) for a, r in entry["metrics"].items()}
            source = f"results/{path.parent.name}"
            cases += cases_of(source, group, results)
            approx = {a: approximate(stripped(r)) for a, r in results.items()}
            for metric in METRICS:
                pick = (clear_best(results, metric), clear_best(approx, metric))
                bold.append(
                    {
                        "source": source,
                        "group": group,
                        "metric": metric,
                        "bootstrap": pick[0],
                        "approximate": pick[1],
                    }
                )
    return cases, bold


def cached(scores_dir: Path) -> list[dict]:
    """Cases of every per-combo score file under ``scores_dir`` (bootstrap drawn here, default settings)."""
    cases = []
    for path in sorted(scores_dir.glob("*/scores.json")):
        scored = Scored.from_json(json.loads(path.read_text()))
        if scored.labels.min() == scored.labels.max():
            continue
        finite = {a: v for a, v in scored.scores.items() if np.isfinite(v).all()}  # a NaN attack has no ROC
        boot = evaluate_bootstrap(scored.labels, finite).results
        cases += cases_of("cache", path.parent.name, boot)
    return cases


def kind(case: dict) -> str:
    return "cache" if case["source"] == "cache" else "committed"


def n0_bucket(n: int) -> str:
    return "n0 < 100" if n < 100 else "100 <= n0 < 1000" if n < 1000 else "n0 >= 1000"


def summarise(cases: list[dict]) -> dict:
    """Width ratios and containment of the cases, as counts and fractions."""
    ratios = [
        (c["approximate"][1] - c["approximate"][0]) / (c["bootstrap"][1] - c["bootstrap"][0])
        for c in cases
        if c["bootstrap"][1] > c["bootstrap"][0]
    ]
    low = sum(c["approximate"][0] <= c["bootstrap"][0] + 1e-12 for c in cases)
    high = sum(c["approximate"][1] >= c["bootstrap"][1] - 1e-12 for c in cases)
    both = sum(
        c["approximate"][0] <= c["bootstrap"][0] + 1e-12 and c["approximate"][1] >= c["bootstrap"][1] - 1e-12
        for c in cases
    )
    point = sum(c["approximate"][0] <= c["point"] <= c["approximate"][1] for c in cases)
    zero = sum(
        c["approximate"][1] == c["approximate"][0] and c["bootstrap"][1] > c["bootstrap"][0] for c in cases
    )
    shifts = {
        end: [c["approximate"][i] - c["bootstrap"][i] for c in cases] for i, end in enumerate(("low", "high"))
    }
    return {
        "cases": len(cases),
        "end_shift": {  # approximate end - bootstrap end: < 0 at low / > 0 at high is wider there
            end: {"median": round(statistics.median(v), 4), "min": round(min(v), 4), "max": round(max(v), 4)}
            for end, v in shifts.items()
        },
        "width_ratio": {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
            "cases": len(ratios),
        }
        if ratios
        else None,
        "contains_bootstrap_low": low,
        "contains_bootstrap_high": high,
        "contains_bootstrap_interval": both,
        "contains_point": point,
        "zero_width_where_bootstrap_is_not": zero,
    }


def shift(summary: dict, end: str) -> str:
    v = summary["end_shift"][end]
    return f"{v['median']:+.3f} [{v['min']:+.3f}, {v['max']:+.3f}]"


def table(cases: list[dict]) -> tuple[dict, list[str]]:
    """Summaries by (source kind, metric, non-member count) and their markdown rows."""
    keys = sorted({(kind(c), c["metric"], n0_bucket(c["n_nonmembers"])) for c in cases})
    summary, rows = {}, []
    for source, metric, bucket in keys:
        part = [
            c
            for c in cases
            if kind(c) == source and c["metric"] == metric and n0_bucket(c["n_nonmembers"]) == bucket
        ]
        s = summary[f"{source} | {metric} | {bucket}"] = summarise(part)
        w = s["width_ratio"] or {"median": "-", "min": "-", "max": "-"}
        n = s["cases"]
        rows.append(
            f"| {source} | {metric} | {bucket} | {n} | {w['median']} [{w['min']}, {w['max']}] | "
            f"{s['contains_bootstrap_low']}/{n} | {s['contains_bootstrap_high']}/{n} | "
            f"{s['contains_bootstrap_interval']}/{n} | {s['contains_point']}/{n} | "
            f"{s['zero_width_where_bootstrap_is_not']} | {shift(s, 'low')} | {shift(s, 'high')} |"
        )
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scores", type=Path, default=DEFAULT_SCORES, help="a study cache's scores/ (read only)"
    )
    parser.add_argument("--no-scores", action="store_true", help="committed results only")
    args = parser.parse_args()
    cases, bold = committed()
    use_cache = not args.no_scores and args.scores.is_dir()
    if use_cache:
        cases += cached(args.scores)
    summary, rows = table(cases)
    agree = sum(b["bootstrap"] == b["approximate"] for b in bold)
    record = {
        "summary": summary,
        "bold_rule": {"tables": len(bold), "same_cell": agree, "cases": bold},
        "scores_dir": str(args.scores) if use_cache else None,
        "cases": cases,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "approx_intervals.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Approximate intervals against bootstrap intervals",
        "",
        "`PYTHONPATH=src python benchmarks/approx_intervals.py` (`approx_intervals.json` has every case). "
        "Approximate: Hanley & McNeil (1982) for AUC; for TPR a Wilson interval with the delta-method "
        "variance (secant slope) as an effective member count (Korn & Graubard 1998) "
        "(`ltmia.approx_intervals`), from each number and its class counts alone. Bootstrap: ltmia's "
        "stratified percentile bootstrap (1,000 resamples, seed 0). committed: every group of a committed "
        "`results/*/results.json` with bootstrap intervals; cache: every per-combo score file of "
        f"{'the study cache (' + str(args.scores) + ')' if use_cache else 'no study cache (not read)'}. "
        "TPR@0.1% from fewer than 1,000 non-members is not a measurement and has no approximate interval.",
        "",
        "| source | metric | non-members | cases | width ratio approx/bootstrap, median [min, max] | "
        "contains bootstrap low | contains bootstrap high | contains both | contains point | "
        "zero width where bootstrap is not | low end approx − bootstrap, median [min, max] | "
        "high end approx − bootstrap |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Bold rule (`clear_best`) on the committed bootstrap tables: the same cell (or none) with "
        f"approximate intervals in {agree} of {len(bold)} group x metric rows"
        + (
            ": differs in "
            + "; ".join(
                f"{b['source']} {b['group']} {b['metric']} (bootstrap {b['bootstrap']}, approximate "
                f"{b['approximate']})"
                for b in bold
                if b["bootstrap"] != b["approximate"]
            )
            if agree < len(bold)
            else ""
        )
        + ".",
        "",
    ]
    (OUT / "approx_intervals.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
