"""Study configs, the stage graph and its cache keys, and a miniature study end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from ltmia.attacks import ATTACKS
from ltmia.classifier import LTMIA
from ltmia.classifier import checkpoint as checkpoint_module
from ltmia.errors import InputError, OutputExistsError
from ltmia.store import Store
from ltmia.study import stages as stages_module
from ltmia.study.config import load_config, parse, read_toml, select, shipped_configs
from ltmia.study.export import export_classifier
from ltmia.study.report import write_report
from ltmia.study.runner import run_local, status
from ltmia.study.stages import plan

MINI = Path(__file__).parent / "data" / "mini.toml"


def keys_by_label(study) -> dict[str, str]:
    return {stage.label: stage.key for stage in study.stages}


@pytest.mark.slow
def test_shipped_configs_plan():
    """Every shipped config (paper included, which cannot run offline) validates and plans its stages."""
    names = shipped_configs()
    assert {"demo", "offline-full", "paper"} <= set(names)
    for name in names:
        study = plan(load_config(name))
        kinds = {stage.kind for stage in study.stages}
        assert {"finetune", "extract", "baselines", "lt_mia"} <= kinds, name
        keys = [stage.key for stage in study.stages]
        assert len(keys) == len(set(keys)), f"{name}: a stage is planned twice"
        seen: set[str] = set()
        for stage in study.stages:  # dependencies come first
            assert all(dep.key in seen or dep.kind == "shipped" for dep in stage.deps), stage.label
            seen.add(stage.key)


LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PAPER_LORA_TARGETS = {  # SPEC §8: LoRA r 16 / alpha 32 / dropout 0.05 on these modules; None: full
    "distilgpt2": None,
    "gpt2-xl": None,
    "Qwen/Qwen2-1.5B": None,
    "tiiuae/falcon-rw-1b": None,
    "EleutherAI/pythia-1.4b": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "tiiuae/falcon-7b": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "cerebras/Cerebras-GPT-2.7B": ("c_attn", "c_proj", "c_fc"),
    "EleutherAI/gpt-j-6B": ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"),
    "google/gemma-2b": LLAMA_STYLE,
    "mosaicml/mpt-7b": ("Wqkv", "out_proj", "up_proj", "down_proj"),
}
PAPER_EVAL_LORA_TARGETS = {
    "gpt2": None,
    "EleutherAI/pythia-2.8b": None,
    "EleutherAI/pythia-6.9b": None,
    "meta-llama/Llama-2-7b-hf": None,
    "mistralai/Mistral-7B-v0.1": LLAMA_STYLE,
    "microsoft/phi-2": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "facebook/opt-2.7b": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "state-spaces/mamba-2.8b-hf": None,
    "RWKV/rwkv-4-3b-pile": None,
    "google/recurrentgemma-2b": None,  # not published; full, like the other non-transformers
}


def test_paper_config_uses_hub_models_and_no_zoo():
    """SPEC §8: 10 transformers x 3 datasets to train on, 10 held-out models x 4 held-out datasets."""
    config = load_config("paper")
    study = plan(config)
    assert not any(stage.kind in ("tokenizer", "pretrain") for stage in study.stages)
    train = config.combos(config.classifiers["lt-mia"].train)
    held_out = [combo for combo in config.all_combos if combo not in train]
    assert len(train) == 30 and len(held_out) == 40
    assert len([stage for stage in study.stages if stage.kind == "finetune"]) == 70  # repeats run once
    for combos, expected in ((train, PAPER_LORA_TARGETS), (held_out, PAPER_EVAL_LORA_TARGETS)):
        assert {combo.model for combo in combos} == set(expected)
        for combo in combos:
            recipe = combo.recipe
            targets = expected[combo.model]
            assert recipe.lora == (targets is not None) and recipe.lora_targets == targets, combo.model
            assert (recipe.lora_r, recipe.lora_alpha, recipe.lora_dropout) == (16, 32, 0.05)
            assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.precision) == (3, 16, 5e-5, "fp32")
    assert {(combo.corpus, combo.column, combo.kind) for combo in train} == {
        ("hf:heegyu/news-category-dataset:train", "headline+short_description", None),
        ("hf:wikimedia/wikipedia@20231101.en:train[:200000]", "text", None),
        ("hf:abisee/cnn_dailymail@3.0.0:train", "article", None),
    }
    code = "hf:tokyotech-llm/swallow-code@swallow-code:train[:200000]"
    assert {(combo.corpus, combo.column, combo.kind) for combo in held_out} == {
        ("hf:fancyzhx/ag_news:train", None, None),
        ("hf:Salesforce/wikitext@wikitext-103-raw-v1:train[:200000]", None, None),
        ("hf:EdinburghNLP/xsum:train", "document", None),
        (code, "text|content|code|body|document", "code"),
    }
    assert all(
        (combo.members, combo.val, combo.seed, combo.bos) == (10000, 500, 42, "never")
        for combo in config.all_combos
    )
    assert config.classifiers["lt-mia"].params == {}  # SPEC §6 defaults
    published = {name: group.paper["auc"] for name, group in config.groups.items() if group.paper}
    assert published == {
        "gpt2 / ag_news": 0.944,
        "gpt2 / wikitext": 0.980,
        "gpt2 / xsum": 0.991,
        "pythia-2.8b / ag_news": 0.914,
        "llama-2-7b / ag_news": 0.960,
        "mistral-7b / xsum": 0.988,
        "mamba-2.8b / ag_news": 0.971,
        "mamba-2.8b / wikitext": 0.993,
        "rwkv-4-3b / ag_news": 0.982,
        "rwkv-4-3b / xsum": 0.998,
    }
    for name in published:  # each published figure is one (model, dataset) combo
        [combo] = config.combos(config.groups[name].combo_sets)
        model, dataset = name.split(" / ")
        assert model in combo.model.lower() and dataset in combo.corpus and combo in held_out, name


def test_changing_one_setting_invalidates_exactly_downstream(tmp_path):
    raw = read_toml(str(MINI))
    before = keys_by_label(plan(parse(raw)))

    more_epochs = json.loads(json.dumps(raw))
    more_epochs["classifiers"]["tiny"]["epochs"] = 2
    after = keys_by_label(plan(parse(more_epochs)))
    changed = {label for label in before if before[label] != after[label]}
    assert changed == {label for label in before if label.startswith(("train classifier", "LT-MIA"))}

    other_recipe = json.loads(json.dumps(raw))
    other_recipe["combos"]["heldout"]["recipe"] = {"epochs": 1, "lr": 1e-4}
    after = keys_by_label(plan(parse(other_recipe)))
    changed = {label for label in before if before[label] != after[label]}
    assert changed == {
        "fine-tune gpt2--fortunes",
        "extract gpt2--fortunes",
        "baselines gpt2--fortunes (all)",
        "LT-MIA tiny on gpt2--fortunes (all)",
    }

    bigger_zoo = json.loads(json.dumps(raw))
    bigger_zoo["zoo"]["epochs"] = 2
    after = keys_by_label(plan(parse(bigger_zoo)))
    assert all(before[label] != after[label] for label in before)  # everything rests on the zoo


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["combos"]["train"].update(modles=["zoo:llama"]), "[combos.train]: unknown key 'modles'"),
        (lambda r: r["groups"]["held-out"].update(combos=["nope"]), "unknown combo set 'nope'"),
        (lambda r: r["groups"]["held-out"].update(split="val"), "split must be one of"),
        (lambda r: r["combos"]["train"].update(models=["zoo:transformerxl"]), "unknown architecture"),
        (lambda r: r["classifiers"]["tiny"].update(groups=["targets"]), "unknown feature group"),
        (lambda r: r["combos"]["train"].update(members=5), "members must be an integer >= 20"),
        (
            lambda r: r["combos"]["train"].update(recipe={"optimiser": "sgd"}),
            "[combos.train.recipe]: unknown key 'optimiser'",
        ),
        (lambda r: r["combos"]["train"].update(models=["packaged:gpt-5"]), "unknown packaged model"),
        (
            lambda r: r["combos"]["train"].update(bos="sometimes"),
            "[combos.train]: bos 'sometimes' is not one of: never, always, auto",
        ),
        (lambda r: r["combos"]["train"].update(recipe={"precision": "fp8"}), "precision 'fp8'"),
    ],
)
def test_config_errors_name_the_problem(edit, message):
    raw = read_toml(str(MINI))
    edit(raw)
    with pytest.raises(InputError, match=re.escape(message)):
        parse(raw)


def test_real_model_settings_enter_the_fine_tune_key():
    """A packaged model's pinned hash, the BOS setting and the resolved precision are in the stage key."""
    raw = read_toml(str(MINI))
    raw["combos"]["heldout"]["models"] = ["packaged:smollm2-135m"]
    study = plan(parse(raw))
    target = next(s for s in study.stages if s.kind == "finetune" and "smollm2" in s.label)
    assert target.params["model_source"]["sha256"].startswith("b179c952")
    assert target.params["recipe"]["precision"] == "fp32" and target.params["bos"] is None
    keys = {target.key}
    for edit in ({"bos": "always"}, {"recipe": {"epochs": 1, "precision": "bf16"}}):
        changed = json.loads(json.dumps(raw))
        changed["combos"]["heldout"].update(edit)
        other = next(s for s in plan(parse(changed)).stages if s.kind == "finetune" and "smollm2" in s.label)
        keys.add(other.key)
    assert len(keys) == 3


def test_memory_budget_is_a_runtime_setting_not_a_key():
    raw = read_toml(str(MINI))
    before = plan(parse(raw))
    raw["store"] = {**raw.get("store", {}), "memory_budget_mib": 64}
    after = plan(parse(raw))
    assert keys_by_label(before) == keys_by_label(after)
    extract = next(s for s in after.stages if s.kind == "extract")
    assert extract.runtime == {"memory_budget_bytes": 64 * 2**20}


def test_unknown_config_lists_shipped_ones():
    with pytest.raises(InputError, match="offline-full"):
        load_config("no-such-study")


def test_extends_overrides_table_by_table(tmp_path):
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{MINI}"\n[classifiers.tiny]\nepochs = 3\n')
    config = load_config(str(child))
    assert config.name == "child"
    assert config.classifiers["tiny"].params["epochs"] == 3
    assert config.classifiers["tiny"].params["d_model"] == 16  # inherited
    assert set(config.groups) == {"in-distribution", "held-out"}


@pytest.mark.slow
def test_mini_study_end_to_end_and_resume(tmp_path, monkeypatch):
    """A killed run resumes without redoing finished stages; then the tables are well formed."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    study = plan(load_config(str(MINI)))
    calls: list[str] = []
    real = {kind: stages_module.RUNNERS.get(kind) for kind in stages_module.RUNNERS}

    def counting(kind):
        def run(stage, cache_dir, device):
            calls.append(stage.label)
            if stage.kind == "extract" and len([c for c in calls if c.startswith("extract")]) == 2:
                raise KeyboardInterrupt  # the second extraction is "killed"
            real[kind](stage, cache_dir, device)

        return run

    for kind in real:
        monkeypatch.setitem(stages_module.RUNNERS._entries, kind, counting(kind))
    with pytest.raises(KeyboardInterrupt):
        run_local(study, cache)
    finished = {stage.label for stage, done in status(study, cache) if done}
    assert "fine-tune llama--fortunes" in finished and "extract llama--fortunes" in finished
    assert "extract gpt2--fortunes" not in finished

    calls.clear()
    run_local(study, cache)
    assert not finished & set(calls), "a finished stage ran again"
    assert all(done for _, done in status(study, cache))
    assert not list((cache / "classifiers").glob("*.epochs"))  # the classifier's saved epochs are gone

    table = write_report(study, cache, results)
    assert set(table) == {"in-distribution", "held-out"}
    for row in table.values():
        assert {"lt_mia", "loss", "zlib", "min_k", "min_k_pp", "ref_loss", "ez_mia", "wbc"} <= set(
            row.results
        )
        for result in row.results.values():
            assert result.auc_ci[0] <= result.auc <= result.auc_ci[1]
    # the held-out loss AUC, recomputed from its store by hand (mean target log-probability, sklearn's AUC)
    extract = next(stage for stage in study.stages if stage.label == "extract gpt2--fortunes")
    store = Store(extract.out(cache))
    stats = store.stats()
    loss = (stats.target_logprob * stats.valid).sum(1) / stats.valid.sum(1)
    expected = roc_auc_score(store.labels, loss.numpy())
    assert table["held-out"].results["loss"].auc == pytest.approx(expected, abs=1e-9)
    held_out = table["held-out"].results["loss"]
    assert held_out.n_members == held_out.n_nonmembers == 40  # all pairs of an evaluation combo
    in_dist = table["in-distribution"].results["loss"]
    assert in_dist.n_members == in_dist.n_nonmembers == 2  # the 5% test pairs of 40
    record = json.loads((results / "results.json").read_text())
    assert record["config_hash"] == study.config.config_hash
    group = record["groups"]["held-out"]
    assert group["versions"]["torch"] and group["seeds"]["splits"] == 42
    assert len(next(iter(group["combos"].values()))["fingerprint"]) == 64
    assert group["bootstrap"]["replicates"] == 1000 and group["metrics"]["loss"]["auc_ci"]
    best = group["comparisons"]["auc"]
    assert best["best"] != best["runner_up"] and best["low"] <= best["high"]
    summary = (results / "summary.md").read_text()
    assert "| held-out | 40/40 |" in summary and "## TPR@0.1%FPR" in summary
    assert (results / "groups" / "held-out-roc.png").stat().st_size > 1000
    versus = group["vs_best_baseline"]["auc"][0]
    assert versus["attack"] == "lt_mia" and versus["baseline"] in ATTACKS.names()
    assert "### AUC: LT-MIA − best baseline" in summary

    # part of the study (--group): every stage already cached, a report of that group alone saying so
    part = plan(load_config(str(MINI), None, ["held-out"]))
    assert all(done for _, done in status(part, cache))
    part_table = write_report(part, cache, tmp_path / "part")
    assert list(part_table) == ["held-out"]
    assert part_table["held-out"].results["loss"].auc == table["held-out"].results["loss"].auc
    part_summary = (tmp_path / "part" / "summary.md").read_text()
    assert "left out: groups 'in-distribution'." in part_summary and "| in-distribution |" not in part_summary

    # the trained classifier, exported with the record of what made it, scores like the one in the cache
    out = export_classifier(str(MINI), "tiny", cache, tmp_path / "exported", results="results/mini")
    made = json.loads((out / "study.json").read_text())
    assert made["study"] == "mini" and made["classifier"] == "tiny" and made["results"] == "results/mini"
    assert made["stage_key"] == study.classifiers["tiny"].key
    assert made["trained_on"] == ["zoo:llama x fortunes (train)"]
    assert LTMIA.load(out).score(store, split=None).tolist() == (
        LTMIA.load(study.classifiers["tiny"].out(cache)).score(store, split=None).tolist()
    )
    with pytest.raises(OutputExistsError):
        export_classifier(str(MINI), "tiny", cache, out)
    with pytest.raises(InputError, match="trains no classifier 'nope'; it trains: tiny"):
        export_classifier(str(MINI), "nope", cache, tmp_path / "other")


def test_shipped_classifier_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "shipped_root", lambda: tmp_path / "nothing")
    raw = read_toml(str(MINI))
    raw["classifiers"] = {"shipped": {"shipped": True}}
    with pytest.raises(InputError, match="no shipped classifier 'real'; shipped: none"):
        plan(parse(raw))


def test_shipped_classifiers_are_chosen_by_name():
    """``shipped = true`` is the default shipped classifier (real), ``shipped = "zoo"`` names one; a name
    plans the stage the default does when it is the default (keyed by the weights' checksum), and an unknown
    name or a wrong type is one line."""
    raw = read_toml(str(MINI))
    raw["classifiers"] = {
        "default": {"shipped": True},
        "real": {"shipped": "real"},
        "zoo": {"shipped": "zoo"},
    }
    study = plan(parse(raw))
    default, real, zoo = (study.classifiers[name] for name in ("default", "real", "zoo"))
    assert checkpoint_module.SHIPPED_DEFAULT == "real" and default.key == real.key != zoo.key
    assert Path(zoo.path) == checkpoint_module.shipped_dir("zoo")
    assert parse(raw).classifiers["default"].shipped == "real"
    raw["classifiers"] = {"nope": {"shipped": "nope"}}
    with pytest.raises(
        InputError, match=r"\[classifiers.nope\]: no shipped classifier 'nope'; shipped: .*zoo"
    ):
        parse(raw)
    raw["classifiers"] = {"odd": {"shipped": 1}}
    with pytest.raises(InputError, match="shipped is true"):
        parse(raw)


def test_classifier_dir_takes_a_directory_or_a_shipped_name(tmp_path, monkeypatch):
    """A path that exists wins over a shipped name; a name that is no directory is the shipped classifier;
    anything else is returned as given (its loader names what is missing)."""
    assert checkpoint_module.classifier_dir(None) == checkpoint_module.shipped_dir()
    assert checkpoint_module.classifier_dir("zoo") == checkpoint_module.shipped_dir("zoo")
    assert "zoo" in checkpoint_module.shipped_names()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo").mkdir()
    assert checkpoint_module.classifier_dir("zoo") == Path("zoo")
    assert checkpoint_module.classifier_dir("elsewhere") == Path("elsewhere")


def test_cli_study_plan_lists_stages_without_running(tmp_path):
    from typer.testing import CliRunner

    from ltmia.cli import app

    result = CliRunner().invoke(app, ["study", "plan", str(MINI), "--cache", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "12 stages, 0 cached, 12 to run" in result.output
    assert not any(tmp_path.iterdir())  # planning wrote nothing


def test_part_of_a_study_keeps_its_stage_keys():
    """--group / --classifier: only the named groups and classifiers with the combo sets they use, every
    stage keyed as in the whole study (which then reuses them), and a description naming what is left out."""
    whole = load_config("offline-real")
    part = load_config("offline-real", None, ["Gemma-3-270M, full (manpages)"], ["lt-mia-scores"])
    assert list(part.groups) == ["Gemma-3-270M, full (manpages)"] and list(part.classifiers) == [
        "lt-mia-scores"
    ]
    training = ["train", "real-spec", "real-lr-4x", "real-lora", "real-sgd-cosine"]
    assert sorted(part.combo_sets) == sorted(["gemma-full", *training])
    part_keys = {stage.key for stage in plan(part).stages}
    whole_stages = {stage.key: stage for stage in plan(whole).stages}
    assert part_keys < set(whole_stages)
    kinds = sorted(
        whole_stages[key].kind for key in part_keys if whole_stages[key].kind in ("lt_mia", "baselines")
    )
    assert kinds == ["baselines", "lt_mia"]  # one combo, scored by the baselines and the one classifier
    assert part.name == whole.name and part.config_hash != whole.config_hash
    assert "left out: groups 'in-distribution', 'held-out transformer (qwen2, manpages)'" in part.description
    assert "'Gemma-3-270M, LoRA (manpages)'" in part.description
    assert "classifiers 'lt-mia', 'lt-mia-converged'" in part.description
    assert part.description.endswith("Run it without --group / --classifier for the whole study.")
    assert select(whole) is whole
    only_groups = select(whole, groups=["SmolLM2-135M (manpages)"])
    assert list(only_groups.classifiers) == list(whole.classifiers)  # all classifiers when none is named
    assert "classifiers" not in only_groups.description.split("left out: ")[1]
    with pytest.raises(InputError, match="the study has no group 'Gemma'; its groups: 'in-distribution"):
        select(whole, groups=["Gemma"])
    with pytest.raises(InputError, match="no classifier 'nope'; its classifiers: 'lt-mia', "):
        select(whole, classifiers=["nope"])


def test_cli_study_plan_of_part_of_a_study(tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    from ltmia.cli import app, main

    args = ["study", "plan", str(MINI), "--cache", str(tmp_path), "--group", "held-out"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "10 stages, 0 cached, 10 to run" in result.output  # the in-distribution scores are left out
    monkeypatch.setattr("sys.argv", ["ltmia", *args, "--classifier", "nope"])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the study has no classifier 'nope'; its classifiers: 'tiny'" in err


def test_long_stages_log_progress(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ltmia.study.stages")
    on_step = stages_module.logged_steps("fine-tune smollm2-135m--manpages")
    for _ in range(25):
        on_step(1, 2.5)
    on_texts = stages_module.logged_texts("extract smollm2-135m--manpages")
    on_texts(5, 10)
    on_texts(10, 10)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "fine-tune smollm2-135m--manpages: epoch 1, step 10, loss 2.5000",
        "fine-tune smollm2-135m--manpages: epoch 1, step 20, loss 2.5000",
        "extract smollm2-135m--manpages: 10/10 texts",
    ]


def test_plan_scores_each_evaluation_combo_before_the_next_fine_tune():
    """Every score of a held-out combo comes right after its store (before the next target is fine-tuned),
    so a long study stopped midway has whole combos cached; its classifiers come before any evaluation."""
    study = plan(load_config("offline-real"))
    position = {stage.key: index for index, stage in enumerate(study.stages)}
    scores = {"baselines", "lt_mia", "costly"}
    first_score = min(position[s.key] for s in study.stages if s.kind in scores)
    assert all(position[c.key] < first_score for c in study.classifiers.values() if c.kind != "shipped")
    for stage in study.stages:
        if stage.kind not in scores:
            continue
        store = next(dep for dep in stage.deps if dep.kind == "extract")
        if position[store.key] < first_score:
            continue  # a training store, extracted before the classifiers
        between = study.stages[position[store.key] + 1 : position[stage.key]]
        assert not {s.kind for s in between} & {"finetune", "extract"}, stage.label
