"""The deferred LM head gives the features and stats of the materialised float32 logits, and is used only
where that is exact: not after soft-capping nor on a head wrapped by an adapter."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

from ltmia import lm_head, signals
from ltmia.finetune import Recipe, apply_lora
from ltmia.tokenstats import DeferredLogits, TokenStats, logit_chunks
from ltmia.zoo.architectures import ARCHITECTURES, ZooSize, build_model

TINY = ZooSize(hidden=32, layers=2, heads=2)  # RWKV needs 2 layers
VOCAB = 512  # the tokenizer fixture's


@pytest.fixture(scope="module")
def texts(docstrings):
    return docstrings[:3]


def extract_both_ways(monkeypatch, target, reference, tokenizer, texts, **kwargs):
    """``extract`` as it runs (deferring where it may) and with every head materialised (the former path);
    also how many forward passes returned `DeferredLogits`."""
    deferred = []
    forward_logits = signals.forward_logits

    def spy(*args, **kw):
        logits = forward_logits(*args, **kw)
        deferred.append(isinstance(logits, DeferredLogits))
        return logits

    with monkeypatch.context() as patch:
        patch.setattr(signals, "forward_logits", spy)
        fast = signals.extract(target, reference, tokenizer, texts, batch_size=2, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(lm_head, "DEFERRABLE", frozenset())
        former = signals.extract(target, reference, tokenizer, texts, batch_size=2, **kwargs)
    return fast, former, sum(deferred)


def assert_close_signals(a, b) -> None:
    """Equal up to float rounding: the head product is split into other blocks."""
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)
    for field in fields(TokenStats):
        x, y = getattr(a.stats, field.name), getattr(b.stats, field.name)
        if x.dtype == torch.bool:
            assert torch.equal(x, y), field.name
        else:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5, msg=field.name)


def tiny_gemma3(tokenizer, seed: int = 0, **config) -> Gemma3ForCausalLM:
    torch.manual_seed(seed)
    text_config = Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    return Gemma3ForCausalLM(text_config).eval()


def tiny_llama(tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_deferred_head_matches_the_materialised_logits(family, precision, tokenizer, texts, monkeypatch):
    if family == "llama":
        target, reference = tiny_llama(tokenizer, 0), tiny_llama(tokenizer, 1)
    else:
        target, reference = tiny_gemma3(tokenizer, 0), tiny_gemma3(tokenizer, 1)
    fast, former, deferred = extract_both_ways(
        monkeypatch, target, reference, tokenizer, texts, precision=precision
    )
    assert deferred == 4  # 2 batches x 2 models
    assert_close_signals(fast, former)


@pytest.mark.slow
def test_deferred_head_on_every_zoo_family(tokenizer, texts, monkeypatch):
    """Every zoo family but RecurrentGemma (which soft-caps its logits) defers, with the same results."""
    for arch in ARCHITECTURES.names():
        target, reference = (
            build_model(arch, VOCAB, tokenizer.eos_token_id, tokenizer.pad_token_id, TINY, seed=seed).eval()
            for seed in (0, 1)
        )
        blocker = lm_head.deferral_blocker(target)
        if arch == "recurrent_gemma":
            assert blocker is not None and "RecurrentGemmaForCausalLM" in blocker
            continue
        assert blocker is None, arch
        fast, former, deferred = extract_both_ways(monkeypatch, target, reference, tokenizer, texts[:2])
        assert deferred == 2, arch
        assert_close_signals(fast, former)


def test_lora_target_without_reference_defers_both_passes(tokenizer, texts, monkeypatch):
    """The reference is the same model with adapters disabled; adapters on the projections leave the head
    a plain ``nn.Linear`` shared by both passes."""
    target = apply_lora(tiny_llama(tokenizer, 0), Recipe(lora=True)).eval()  # no LoRA dropout
    torch.manual_seed(2)
    for name, parameter in target.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # adapters that change the logits
    fast, former, deferred = extract_both_ways(monkeypatch, target, None, tokenizer, texts)
    assert deferred == 4
    assert_close_signals(fast, former)
    assert not torch.allclose(fast.stats.target_logprob, fast.stats.reference_logprob)  # adapters did act


def test_adapter_on_the_head_or_hooks_keep_the_head_materialised(tokenizer):
    wrapped = apply_lora(tiny_llama(tokenizer, 0), Recipe(lora=True, lora_targets=("q_proj", "lm_head")))
    assert "not a plain nn.Linear" in str(lm_head.deferral_blocker(wrapped))
    model = tiny_llama(tokenizer, 0)
    hook = model.lm_head.register_forward_hook(lambda module, args, out: out)
    assert lm_head.deferral_blocker(model) == "the LM head has forward hooks"
    hook.remove()
    assert lm_head.deferral_blocker(model) is None


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_soft_capping_keeps_the_head_materialised(family, tokenizer, texts, monkeypatch):
    """Soft-capped logits are tanh(z / c) c: deferring the head would drop the cap; extraction does not."""
    if family == "gemma3":
        model = tiny_gemma3(tokenizer, final_logit_softcapping=2.0)
    else:
        torch.manual_seed(0)
        config = Gemma2Config(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            final_logit_softcapping=2.0,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = Gemma2ForCausalLM(config).eval()
    torch.nn.init.normal_(model.get_output_embeddings().weight)  # logits well beyond the cap of 2
    assert lm_head.deferral_blocker(model) == (
        "the config sets final_logit_softcapping, applied to the logits after the head"
    )
    fast, former, deferred = extract_both_ways(monkeypatch, model, model, tokenizer, texts[:2])
    assert deferred == 0
    assert torch.equal(fast.features, former.features)
    monkeypatch.setattr(lm_head, "deferral_blocker", lambda model: None)  # what deferring would give
    wrong = signals.extract(model, model, tokenizer, texts[:2], batch_size=2)
    assert not torch.allclose(wrong.stats.mink_mu, fast.stats.mink_mu, atol=1e-3)


def test_deferred_logits_are_the_head_on_the_hidden_states() -> None:
    """Hand-made: rows are h W^T + b at the asked positions, in float32, in blocks of whole chunks."""
    hidden = torch.arange(2 * 3 * 2, dtype=torch.bfloat16).view(2, 3, 2)
    weight, bias = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]), torch.tensor([0.0, 0.5, 0.0])
    deferred = DeferredLogits(hidden, weight, bias, block_positions=5)
    assert deferred.shape == (2, 3, 3)
    rows = deferred.rows(torch.tensor([1, 0]), torch.tensor([2, 1]))
    assert rows.dtype == torch.float32
    assert torch.equal(rows, torch.tensor([[10.0, 11.5, -1.0], [2.0, 3.5, -1.0]]))
    logits = torch.nn.functional.linear(hidden.float(), weight, bias)
    ids, mask = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    chunks = [(n, t, z.clone()) for n, t, z, _, _ in logit_chunks(deferred, logits, ids, mask, 2)]
    assert [len(n) for n, _, _ in chunks] == [2, 2]  # 4 valid positions: one block of 2 whole chunks
    for n, t, z in chunks:
        assert torch.equal(z, logits[n, t])
