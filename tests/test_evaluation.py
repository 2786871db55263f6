"""Evaluation output: pooled groups, markdown tables, log-log ROC plots, JSON records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ltmia.errors import InputError
from ltmia.evaluation import Scored, markdown_table, merge, metrics, pool, slugify, write_results


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


def test_markdown_table_orders_by_auc_and_flags_small_tpr01():
    results = metrics(scored("s", [1, 1, 0, 0], good=[4, 3, 2, 1], bad=[1, 2, 3, 4]))
    table = markdown_table(results, "t")
    lines = table.splitlines()
    assert lines[0] == "### t"
    assert lines[4].startswith("| good | 1.000 |") and lines[5].startswith("| bad | 0.000 |")
    assert "not measurable" in lines[4]  # 2 non-members < 1,000


def test_write_results_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200), np.zeros(200)].astype(int)
    s = Scored(
        "s", labels, {"lt_mia": labels + rng.normal(0, 1, 400), "loss": rng.normal(0, 1, 400)}, np.arange(400)
    )
    results = write_results(s, tmp_path, "grp", "A group", {"config_hash": "abc"})
    saved = json.loads((tmp_path / "grp.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps({a: r.to_dict() for a, r in results.items()}))
    assert saved["config_hash"] == "abc" and saved["metrics"]["lt_mia"]["n_members"] == 200
    assert saved["metrics"]["lt_mia"]["auc"] > saved["metrics"]["loss"]["auc"]
    assert (tmp_path / "grp.md").read_text().startswith("### A group")
    png = (tmp_path / "grp-roc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_slugify():
    assert slugify("held-out transformer (qwen2, manpages)") == "held-out-transformer-qwen2-manpages"
    assert slugify("!!!") == "group"
