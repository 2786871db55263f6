"""Evaluation output: pooled groups, tables with intervals (markdown, HTML, terminal), log-log ROC plots,
JSON records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from ltmia.errors import InputError
from ltmia.evaluation import (
    Cell,
    Evaluation,
    Scored,
    Table,
    clear_best,
    comparison_table,
    evaluation,
    merge,
    metrics,
    pool,
    render,
    slugify,
    write_results,
)
from ltmia.metrics import MetricResult


def scored(name: str, labels: list[int], **scores: list[float]) -> Scored:
    return Scored(
        name,
        np.asarray(labels),
        {k: np.asarray(v, dtype=float) for k, v in scores.items()},
        np.arange(len(labels)),
    )


def test_pool_concatenates_rows_and_keeps_shared_attacks():
    a = scored("a", [1, 0], loss=[0.9, 0.1], lt_mia=[2.0, -1.0])
    b = scored("b", [1, 0, 0], loss=[0.2, 0.3, 0.1])
    group = pool("g", [a, b])
    assert group.labels.tolist() == [1, 0, 1, 0, 0]
    assert list(group.scores) == ["loss"]  # lt_mia is missing from b, so the pooled ROC cannot use it
    assert group.scores["loss"].tolist() == [0.9, 0.1, 0.2, 0.3, 0.1]
    # pooled AUC by hand: members {0.9, 0.2} vs non-members {0.1, 0.3, 0.1}: 0.9 beats all 3,
    # 0.2 beats the two 0.1s -> 5 of 6 pairs
    assert metrics(group)["loss"].auc == pytest.approx(5 / 6)


def test_merge_refuses_different_rows():
    a = scored("a", [1, 0], loss=[0.9, 0.1])
    b = Scored("b", np.asarray([1, 0]), {"lt_mia": np.asarray([1.0, 0.0])}, np.asarray([0, 2]))
    with pytest.raises(ValueError, match="different rows"):
        merge([a, b])
    both = merge([a, scored("a", [1, 0], lt_mia=[1.0, 0.0])])
    assert set(both.scores) == {"loss", "lt_mia"}


def test_one_class_is_a_clear_error():
    with pytest.raises(InputError, match="only one class"):
        metrics(scored("members only", [1, 1], loss=[0.1, 0.2]))


def test_metrics_table_orders_by_auc_and_flags_small_tpr01():
    result = evaluation(scored("s", [1, 1, 0, 0], good=[4, 3, 2, 1], bad=[1, 2, 3, 4]), "t")
    lines = render(result.table(), "markdown").splitlines()
    assert lines[0] == "### t"
    assert lines[2] == "| attack | AUC | TPR@1%FPR | TPR@0.1%FPR | members | non-members |"
    # perfectly separated: the interval is [1, 1], which excludes bad's 0.000, so good is bold ...
    assert lines[4].startswith("| good | **1.000 [1.000, 1.000]** | **1.000 [1.000, 1.000]** |")
    # ... except at 0.1% FPR: from 2 non-members (< 1,000) that is not a measurement, never bold
    assert "| 1.000† [1.000, 1.000] | 2 | 2 |" in lines[4] and lines[5].startswith("| bad | 0.000 [")
    assert any(line.startswith("†: TPR@0.1% from fewer than 1,000") for line in lines)
    assert any("good − bad +1.000" in line for line in lines)  # the paired best - runner-up difference


def with_ci(auc: float, low: float, high: float) -> MetricResult:
    return MetricResult(auc, 0.1, 0.0, 1000, 1000, auc_ci=(low, high))


def test_best_is_bold_only_when_its_interval_excludes_the_runner_up():
    clear = {"a": with_ci(0.90, 0.86, 0.94), "b": with_ci(0.85, 0.81, 0.89), "c": with_ci(0.5, 0.45, 0.55)}
    assert clear_best(clear, "auc") == "a"
    close = {**clear, "a": with_ci(0.87, 0.84, 0.90)}  # 0.85 lies inside a's interval
    assert clear_best(close, "auc") is None
    no_interval = {"a": MetricResult(0.9, 0.1, 0.0, 9, 9), "b": MetricResult(0.5, 0.1, 0.0, 9, 9)}
    assert clear_best(no_interval, "auc") is None  # no evidence, no bold
    table = Evaluation("t", clear).table()
    assert [cell.bold for cell in table.rows[0]][:2] == [False, True] and not table.rows[1][1].bold
    assert "**0.900 [0.860, 0.940]**" in render(table, "markdown")


def test_render_escapes_and_draws_one_table_three_ways():
    table = Table(["attack", "AUC"], [[Cell("<b>x|y</b>"), Cell("0.5", bold=True)]], "T", ["note <i>"])
    page = render(table, "html")
    assert "&lt;b&gt;x|y&lt;/b&gt;" in page and "<b>0.5</b>" in page and "note &lt;i&gt;" in page
    assert '<td class="num"><b>0.5</b></td>' in page
    assert "| <b>x\\|y</b> | **0.5** |" in render(table, "markdown")
    console = Console(record=True, width=80)
    console.print(render(table, "rich"))
    text = console.export_text()
    assert "<b>x|y</b>" in text and "note <i>" in text


def test_comparison_table_one_row_per_group():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(300), np.zeros(300)].astype(int)
    strong = scored(
        "g",
        labels.tolist(),
        lt_mia=(labels * 3 + rng.normal(size=600)).tolist(),
        loss=rng.normal(size=600).tolist(),
    )
    rows = {"g": evaluation(strong, "g")}
    table = comparison_table(rows, "auc", ["lt_mia", "loss"], {"g": "0.908"})
    assert table.columns == ["group", "n (m/nm)", "lt_mia", "loss", "best − runner-up", "paper LT-MIA"]
    row = table.rows[0]
    assert row[1].text == "300/300" and row[2].bold and not row[3].bold
    assert row[4].text.startswith("lt_mia − loss +0.") and row[5].text == "0.908"
    assert render(table, "markdown").splitlines()[1] == "|---|---|---:|---:|---:|---:|"


def test_write_results_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200), np.zeros(200)].astype(int)
    s = Scored(
        "s", labels, {"lt_mia": labels + rng.normal(0, 1, 400), "loss": rng.normal(0, 1, 400)}, np.arange(400)
    )
    result = write_results(s, tmp_path, "grp", "A group", {"config_hash": "abc"})
    saved = json.loads((tmp_path / "grp.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps({a: r.to_dict() for a, r in result.results.items()}))
    assert saved["config_hash"] == "abc" and saved["metrics"]["lt_mia"]["n_members"] == 200
    assert saved["metrics"]["lt_mia"]["auc"] > saved["metrics"]["loss"]["auc"]
    low, high = saved["metrics"]["lt_mia"]["auc_ci"]
    assert low < saved["metrics"]["lt_mia"]["auc"] < high
    assert saved["bootstrap"] == {
        "method": "stratified percentile bootstrap",
        "replicates": 1000,
        "seed": 0,
        "level": 0.95,
    }
    assert saved["comparisons"]["auc"]["best"] == "lt_mia" and saved["comparisons"]["auc"]["low"] > 0
    assert (tmp_path / "grp.md").read_text().startswith("### A group")
    plain = write_results(s, tmp_path / "plain", "grp", "A group", bootstrap=None)
    assert (
        plain.results["lt_mia"].auc == result.results["lt_mia"].auc and plain.results["lt_mia"].auc_ci is None
    )
    assert "bootstrap" not in json.loads((tmp_path / "plain" / "grp.json").read_text())
    png = (tmp_path / "grp-roc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_slugify():
    assert slugify("held-out transformer (qwen2, manpages)") == "held-out-transformer-qwen2-manpages"
    assert slugify("!!!") == "group"


def test_each_learned_attack_is_compared_with_the_best_baseline_of_each_metric():
    """``versus``: per metric, every lt_mia[...] minus the best hand-made score of that metric, with the
    paired bootstrap interval of exactly that difference; a metric the baseline cannot measure is left out."""
    from ltmia.evaluation import versus_table
    from ltmia.metrics import evaluate_bootstrap

    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300), np.zeros(300)].astype(int)
    scores = {
        "lt_mia[strong]": labels * 2.0 + rng.normal(0, 1, 600),
        "lt_mia[weak]": labels * 0.1 + rng.normal(0, 1, 600),
        "loss": labels * 0.8 + rng.normal(0, 1, 600),
        "zlib": labels * 0.3 + rng.normal(0, 1, 600),
    }
    result = evaluation(Scored("s", labels, scores, np.arange(600)), "S")
    assert set(result.versus) == {"auc", "tpr_at_1pct"}  # 300 non-members: TPR@0.1% is not measured
    boot = evaluate_bootstrap(labels, scores)
    for metric, found in result.versus.items():
        best = max(("loss", "zlib"), key=lambda a: getattr(result.results[a], metric))
        assert [v.attack for v in found] == ["lt_mia[strong]", "lt_mia[weak]"]
        for v in found:
            assert v.baseline == best
            assert v.difference == boot.difference(v.attack, best)[metric]
            expected = getattr(result.results[v.attack], metric) - getattr(result.results[best], metric)
            assert v.difference.delta == pytest.approx(expected)
    assert Evaluation.from_record(json.loads(json.dumps(result.record()))).versus == result.versus
    table = versus_table({"S": result}, "auc", list(scores))
    assert table is not None and table.columns[2:] == ["lt_mia[strong] − it", "lt_mia[weak] − it"]
    row = table.rows[0]
    assert row[1].text == f"loss {result.results['loss'].auc:.3f}"
    assert row[2].bold and not row[3].bold  # strong's interval lies above zero, weak's below
    assert result.versus["auc"][1].difference.high < 0
    plain = evaluation(Scored("p", labels, {"loss": scores["loss"]}, np.arange(600)), "P")
    assert plain.versus == {} and versus_table({"P": plain}, "auc", ["loss"]) is None
