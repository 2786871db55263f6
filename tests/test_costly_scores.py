"""Costly attacks on a tiny zoo target's store: prefix sources, the shared encoding, ``ltmia baselines
--attacks`` end to end, and the optional study stage (keys of existing stages unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ltmia.attacks.costly import COSTLY_ATTACKS
from ltmia.attacks.costly.passes import plain_pass
from ltmia.cli import app
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.costly_scores import (
    CostlyOptions,
    costly_scores,
    outside_texts,
    parse_param,
    prefix_texts,
    split_names,
    store_models,
)
from ltmia.data import make_splits, text_hash
from ltmia.errors import InputError, UnknownNameError
from ltmia.extract import extract_target
from ltmia.finetune import Recipe, finetune
from ltmia.store import Store, StoreSettings
from ltmia.study.config import parse, read_toml
from ltmia.study.stages import plan

MINI = Path(__file__).parent / "data" / "mini.toml"

ALL_COSTLY = ",".join(COSTLY_ATTACKS.names())
CHEAP_SETTINGS = {"samia": {"samples": 2}, "neighbourhood": {"neighbours": 3}, "pac": {"augmentations": 2}}
CHEAP = [a for n, p in CHEAP_SETTINGS.items() for k, v in p.items() for a in ("--param", f"{n}.{k}={v}")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docstrings):
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(text.replace("\n", " ") for text in docstrings[:150]))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_base, corpus):
    """40 members + 40 non-members of a 150-text corpus: test split = 2 pairs, the rest of it unused."""
    splits = make_splits(
        corpus_texts(get_corpus(str(corpus))), 40, 4, 40, seed=0, source={"corpus": str(corpus)}
    )
    target = finetune(
        str(tiny_base), splits, tmp_path_factory.mktemp("t") / "target", Recipe(epochs=1, lr=3e-3)
    )
    return Store(extract_target(target, tmp_path_factory.mktemp("s") / "store", StoreSettings(batch_size=8)))


@pytest.fixture(scope="module")
def models(store):
    return store_models(store, "cpu", batch_size=4)


def test_plain_pass_is_the_stores_target_pass(store, models):
    """Costly attacks encode texts exactly as extraction did (SPEC §2, the store's BOS and L)."""
    texts, stats = store.texts("test"), store.stats("test")
    plain = plain_pass(models, texts)
    assert torch.equal(plain.valid, stats.valid)
    assert torch.allclose(plain.logprob, stats.target_logprob, atol=1e-5)
    assert plain_pass(models, texts) is plain  # cached for every attack of the run


def test_prefix_sources_never_use_scored_texts(store, corpus):
    options = CostlyOptions(shots=3, seed=1)
    test_texts = set(store.texts("test"))
    train = dict(zip(store.texts("train"), store.labels[store.rows("train")], strict=True))
    members = prefix_texts(store, "test", 1, options)
    non_members = prefix_texts(store, "test", 0, options)
    assert len(members) == 3 and all(train[text] == 1 for text in members)  # auto: split:train
    assert all(train[text] == 0 for text in non_members) and not test_texts & {*members, *non_members}
    assert prefix_texts(store, "test", 1, options) == members  # seeded: the same shots every time
    two = CostlyOptions(shots=2)  # the val split holds 2 pairs
    assert set(prefix_texts(store, "train", 1, two)) <= set(store.texts("val"))  # scoring train: val
    unused = prefix_texts(store, None, 0, options)  # all rows scored: unused texts of the target's corpus
    named = set(store.hashes)
    assert not {text_hash(text) for text in unused} & named
    assert set(unused) <= set(outside_texts(store, str(corpus), "attack"))
    with pytest.raises(InputError, match="member prefix can only come from another split"):
        prefix_texts(store, None, 1, options)
    with pytest.raises(InputError, match="which are scored"):
        prefix_texts(store, "test", 0, CostlyOptions(prefix_source="split:test"))
    with pytest.raises(InputError, match="prefix source"):
        CostlyOptions(prefix_source="somewhere")


def test_options_and_names_are_checked_before_any_model_runs():
    assert split_names(["loss", "recall", "wbc", "gradnorm"]) == (["loss", "wbc"], ["recall", "gradnorm"])
    with pytest.raises(UnknownNameError, match=r"unknown attack 'recal'; choose from: .*gradnorm"):
        split_names(["loss", "recal"])
    with pytest.raises(InputError, match="has no setting"):
        CostlyOptions(params={"pac": {"augmentation": 3}})
    assert parse_param("con_recall.gamma=0.3") == ("con_recall", "gamma", 0.3)
    assert parse_param("samia.zlib=true") == ("samia", "zlib", True)
    with pytest.raises(InputError, match=r"attack\.key=value"):
        parse_param("gamma=0.3")


def test_every_costly_attack_scores_the_test_split(store, models):
    options = CostlyOptions(shots=2, params=CHEAP_SETTINGS)
    scored = costly_scores(store, "test", COSTLY_ATTACKS.names(), options, models)
    assert list(scored.scores) == COSTLY_ATTACKS.names()
    assert scored.rows.tolist() == store.rows("test").tolist()
    for name, values in scored.scores.items():
        assert values.shape == (4,) and np.isfinite(values).all(), name
    assert (scored.scores["gradnorm"] < 0).all() and (scored.scores["samia"] >= 0).all()
    again = costly_scores(store, "test", ["samia", "pac"], options, models)
    for name in ("samia", "pac"):  # seeded per text
        np.testing.assert_array_equal(again.scores[name], scored.scores[name])


def test_cli_baselines_with_costly_attacks(store, tmp_path):
    out = tmp_path / "numbers.json"
    args = [
        "baselines",
        str(store.path),
        "--attacks",
        f"loss,{ALL_COSTLY}",
        "--shots",
        "2",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, [*args, *CHEAP, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Costly attacks on 4 texts" in " ".join(result.output.split())  # printed before loading
    attacks = json.loads(out.read_text())["attacks"]
    assert set(attacks) == {"loss", *COSTLY_ATTACKS.names()}
    assert all(entry["n_members"] == 2 == entry["n_nonmembers"] for entry in attacks.values())
    plain = CliRunner().invoke(app, ["baselines", str(store.path), "--json", str(tmp_path / "plain.json")])
    assert plain.exit_code == 0 and "Costly" not in plain.output  # the default is unchanged: one-pass only
    assert len(json.loads((tmp_path / "plain.json").read_text())["attacks"]) == 7


def test_cli_attacks_lists_every_attack_with_cost_and_source():
    result = CliRunner().invoke(app, ["attacks"])
    assert result.exit_code == 0, result.output
    for name in ("loss", "wbc", "ez_mia", *COSTLY_ATTACKS.names()):
        assert name in result.output
    assert "Mattern" in result.output and "Xie" in result.output


def test_study_costly_stage_is_optional_and_keyed_apart():
    """Without [costly] nothing changes; with it, one costly stage per (combo, split) after extraction, and
    every other stage keeps its key."""
    raw = read_toml(str(MINI))
    before = plan(parse(raw))
    assert not before.costly and not before.config.costly_attacks
    raw["costly"] = {"attacks": ["lowercase", "dc_pdd"], "shots": 4}
    after = plan(parse(raw))
    costly = [stage for stage in after.stages if stage.kind == "costly"]
    assert {stage.label for stage in costly} == {
        "costly attacks llama--fortunes (test)",
        "costly attacks gpt2--fortunes (all)",
    }
    assert {s.label: s.key for s in after.stages if s.kind != "costly"} == {
        s.label: s.key for s in before.stages
    }
    assert all(stage.deps[0].kind == "extract" for stage in costly)
    assert costly[0].params["options"]["shots"] == 4 and costly[0].params["attacks"] == [
        "lowercase",
        "dc_pdd",
    ]
    from ltmia.study.ray_backend import RESOURCES
    from ltmia.study.stages import RUNNERS

    assert set(RUNNERS) <= set(RESOURCES)  # the Ray backend can schedule a costly stage too
    raw["costly"]["attacks"] = ["recal"]
    with pytest.raises(InputError, match="unknown costly attack 'recal'"):
        parse(raw)
    raw["costly"] = {"shots": 3}
    with pytest.raises(InputError, match="names no attacks"):
        parse(raw)
    raw["costly"] = {"attacks": ["con_recall"]}  # member shots, but the held-out group scores every row
    with pytest.raises(InputError, match="con_recall needs member shots"):
        parse(raw)


def test_study_costly_runner_writes_scores_the_report_reads(store, tmp_path):
    """The stage runner on a store: one model pair, the scores file the report merges."""
    from ltmia.evaluation import Scored
    from ltmia.study.stages import RUNNERS, Stage

    cache = store.path.parent
    extract = Stage("extract", "extract", {}, (), "k", store.path.name)
    options = CostlyOptions(shots=2).record()
    params = {"attacks": ["lowercase", "recall"], "options": options, "split": "test"}
    stage = Stage("costly", "costly", params, (extract,), "c", "costly-out")
    RUNNERS.get("costly")(stage, cache, "cpu")
    scored = Scored.from_json(json.loads((cache / "costly-out" / "scores.json").read_text()))
    assert list(scored.scores) == ["lowercase", "recall"] and scored.labels.tolist() == [1, 0, 1, 0]


@pytest.mark.slow
def test_mini_study_with_costly_attacks_reports_them(tmp_path):
    """The mini study with [costly]: the costly stages run after extraction and the report shows them
    beside the one-pass baselines, on the same rows (held-out: all 40 pairs; non-member shots come from
    unused corpus texts; in-distribution: the test split, shots from train)."""
    from ltmia.study.report import write_report
    from ltmia.study.runner import run_local

    raw = read_toml(str(MINI))
    raw["costly"] = {"attacks": ["lowercase", "dc_pdd", "recall"], "shots": 2}
    study = plan(parse(raw))
    run_local(study, tmp_path / "cache")
    table = write_report(study, tmp_path / "cache", tmp_path / "results")
    for row in table.values():
        assert {"loss", "wbc", "lowercase", "dc_pdd", "recall"} <= set(row.results)
        assert row.results["recall"].n_members == row.results["loss"].n_members
    header = next(
        line for line in (tmp_path / "results" / "summary.md").read_text().splitlines() if "| group" in line
    )
    assert all(f"| {name} |" in header for name in ("loss", "lowercase", "dc_pdd", "recall"))  # columns
