"""SPEC §3: fine-tuning makes members special; LoRA leaves the base alone; targets round-trip."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from ltmia.data import encode, make_splits
from ltmia.errors import InputError, OutputExistsError
from ltmia.finetune import Recipe, finetune, make_schedule, mean_loss
from ltmia.models import load_causal_lm, load_tokenizer

FAST = dict(epochs=3, batch_size=8, lr=3e-3)


@pytest.fixture(scope="module")
def splits(docstrings):
    return make_splits(docstrings, n_members=24, n_val=8, n_non_members=24, seed=0, source={"corpus": "test"})


@pytest.fixture(scope="module")
def full_target(tmp_path_factory, tiny_base, splits):
    return finetune(str(tiny_base), splits, tmp_path_factory.mktemp("t") / "target", Recipe(**FAST))


def _loss(model, tokenizer, texts):
    return mean_loss(model, *encode(tokenizer, texts))


def test_finetune_lowers_member_loss_more_than_non_member_loss(tiny_base, full_target, splits):
    tokenizer = load_tokenizer(str(full_target))
    base, target = load_causal_lm(str(tiny_base)), load_causal_lm(str(full_target))
    member_drop = _loss(base, tokenizer, splits.members) - _loss(target, tokenizer, splits.members)
    non_member_drop = _loss(base, tokenizer, splits.non_members) - _loss(
        target, tokenizer, splits.non_members
    )
    assert member_drop > non_member_drop + 0.05


def test_target_directory_contents(full_target, splits):
    manifest = json.loads((full_target / "manifest.json").read_text())
    log = json.loads((full_target / "train_log.json").read_text())
    record = json.loads((full_target / "splits.json").read_text())
    assert manifest["artefact"] == "ltmia-target" and manifest["recipe"]["lr"] == FAST["lr"]
    assert len(log["epochs"]) == 3 and manifest["best_epoch"] == log["best_epoch"]
    best = min(log["epochs"], key=lambda e: e["val_loss"])["epoch"]
    assert log["best_epoch"] == best
    assert record["fingerprint"] == splits.record()["fingerprint"] == manifest["split_fingerprint"]
    assert (full_target / "model.safetensors").exists()
    assert not list(full_target.glob("*.bin")) and not list(full_target.parent.glob("*.partial"))


@pytest.mark.slow
def test_best_epoch_is_restored(tiny_base, splits, tmp_path):
    """A huge LR makes later epochs worse; the kept weights must be the best epoch's."""
    target = finetune(str(tiny_base), splits, tmp_path / "t", Recipe(epochs=3, batch_size=8, lr=0.3))
    log = json.loads((target / "train_log.json").read_text())
    tokenizer = load_tokenizer(str(target))
    reloaded = _loss(load_causal_lm(str(target)), tokenizer, splits.val)
    assert reloaded == pytest.approx(min(e["val_loss"] for e in log["epochs"]), rel=1e-4)


def test_round_trip_is_deterministic(full_target):
    tokenizer = load_tokenizer(str(full_target))
    ids, mask = encode(tokenizer, ["A text to score, long enough to be a real example of prose."])
    a = load_causal_lm(str(full_target))(input_ids=ids, attention_mask=mask).logits
    b = load_causal_lm(str(full_target))(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b)


def test_finished_target_is_skipped_and_other_directories_refused(tiny_base, full_target, splits, tmp_path):
    before = (full_target / "manifest.json").read_text()
    assert finetune(str(tiny_base), splits, full_target, Recipe(**FAST)) == full_target
    assert (full_target / "manifest.json").read_text() == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="choose another output directory"):
        finetune(str(tiny_base), splits, tmp_path / "mine", Recipe(**FAST))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"


@pytest.mark.slow
def test_lora_leaves_base_untouched_and_disabling_adapters_gives_the_base(tiny_base, splits, tmp_path):
    base_before = {k: v.clone() for k, v in load_causal_lm(str(tiny_base)).state_dict().items()}
    target = finetune(str(tiny_base), splits, tmp_path / "lora", Recipe(**FAST, lora=True))
    assert (target / "adapter_config.json").exists() and not (target / "model.safetensors").exists()
    model = load_causal_lm(str(target))
    base = model.get_base_model()
    tokenizer = load_tokenizer(str(target))
    ids, mask = encode(tokenizer, splits.members[:4])
    with model.disable_adapter():
        reference_logits = model(input_ids=ids, attention_mask=mask).logits
    fresh = load_causal_lm(str(tiny_base))
    assert torch.allclose(reference_logits, fresh(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
    assert not torch.allclose(model(input_ids=ids, attention_mask=mask).logits, reference_logits, atol=1e-4)
    trained = {n.replace(".base_layer", ""): p for n, p in base.state_dict().items() if "lora_" not in n}
    assert trained.keys() == base_before.keys()
    assert all(torch.equal(trained[name], value) for name, value in base_before.items())
    assert sum(p.numel() for n, p in base.named_parameters() if "lora_" in n) > 0


def test_recipe_validation():
    with pytest.raises(InputError, match="optimizer 'adam' is not one of"):
        Recipe(optimizer="adam")
    with pytest.raises(InputError, match="schedule"):
        Recipe(schedule="step")


def test_schedules():
    param = torch.nn.Parameter(torch.zeros(1))

    def lrs(**kwargs):
        optimizer = torch.optim.SGD([param], lr=1.0)
        schedule = make_schedule(optimizer, Recipe(lr=1.0, **kwargs), total_steps=10)
        values = []
        for _ in range(10):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return values

    assert lrs() == [1.0] * 10
    cosine = lrs(schedule="cosine", warmup_steps=2)
    assert cosine[:2] == [0.5, 1.0] and cosine[2] == pytest.approx(1.0)
    assert cosine[6] == pytest.approx(0.5) and all(a >= b for a, b in itertools.pairwise(cosine[1:]))
    assert lrs(schedule="linear")[5] == pytest.approx(0.5)


def test_lora_targets_of_a_real_family_and_from_the_recipe():
    """Gemma-3 is not in the zoo: its attention + MLP projections come from KNOWN_LORA_TARGETS."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from ltmia.finetune import KNOWN_LORA_TARGETS, apply_lora, lora_targets

    config = Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    assert lora_targets(model) == list(KNOWN_LORA_TARGETS["gemma3_text"])
    assert lora_targets(model, Recipe(lora=True, lora_targets=("q_proj",))) == ["q_proj"]
    wrapped = apply_lora(model, Recipe(lora=True))
    trainable = {n.split(".")[-4] for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable == set(KNOWN_LORA_TARGETS["gemma3_text"])


@pytest.mark.slow
def test_a_diverging_run_is_refused_and_writes_no_target(tiny_base, splits, tmp_path):
    """SGD at an absurd learning rate overflows the loss; ltmia says so in one line and leaves no target (a
    model trained through NaN would otherwise be extracted and scored as if it were a fine-tuned LM)."""
    from ltmia.errors import DivergedError

    recipe = Recipe(epochs=2, batch_size=8, optimizer="sgd", lr=1e12)
    with pytest.raises(DivergedError, match=r"diverged.*lower the learning rate"):
        finetune(str(tiny_base), splits, tmp_path / "t", recipe)
    assert not (tmp_path / "t" / "manifest.json").exists()
    assert not list(tmp_path.glob("t*/model.safetensors"))


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(**FAST),
        Recipe(
            epochs=3, batch_size=8, optimizer="sgd", lr=0.05, momentum=0.9, schedule="cosine", grad_clip=1.0
        ),
        Recipe(epochs=3, batch_size=8, lora=True, lr=1e-2),
    ],
    ids=["adamw", "sgd-cosine", "lora"],
)
def test_a_killed_fine_tune_continues_at_its_last_whole_epoch(tiny_base, splits, tmp_path, recipe):
    """Killed in epoch 3, a fine-tune run again with the same inputs trains epoch 3 only and ends with the
    uninterrupted run's weights and log, bit for bit; the saved epochs never reach the target."""
    whole = finetune(str(tiny_base), splits, tmp_path / "whole", recipe)

    def killed_in_epoch_3(epoch: int, loss: float) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(str(tiny_base), splits, tmp_path / "resumed", recipe, on_step=killed_in_epoch_3)
    scratch = tmp_path / "resumed.partial"
    assert sorted(p.name for p in scratch.glob("epoch-*")) == ["epoch-0002.json", "epoch-0002.safetensors"]
    trained: list[int] = []
    resumed = finetune(
        str(tiny_base), splits, tmp_path / "resumed", recipe, on_step=lambda e, _: trained.append(e)
    )
    assert set(trained) == {3} and not scratch.exists()
    a, b = load_causal_lm(str(whole)).state_dict(), load_causal_lm(str(resumed)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads((t / "train_log.json").read_text()) for t in (whole, resumed)]
    drop = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in logs[0]["epochs"]] == [
        {k: v for k, v in e.items() if k not in drop} for e in logs[1]["epochs"]
    ]
    assert logs[0]["best_epoch"] == logs[1]["best_epoch"]
    assert not list(resumed.glob("epoch-*")) and not (resumed / "inputs.json").exists()


def test_a_dead_run_of_other_inputs_is_started_over(tiny_base, splits, tmp_path):
    """Saved epochs of another recipe are cleared, never continued."""

    def killed_in_epoch_2(epoch: int, loss: float) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(str(tiny_base), splits, tmp_path / "t", Recipe(**FAST), on_step=killed_in_epoch_2)
    assert (tmp_path / "t.partial" / "epoch-0001.json").exists()
    trained: list[int] = []
    other = Recipe(**{**FAST, "lr": 1e-3})
    finetune(str(tiny_base), splits, tmp_path / "t", other, on_step=lambda e, _: trained.append(e))
    assert set(trained) == {1, 2, 3}
