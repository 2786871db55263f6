"""The zoo's architectures: every family builds, trains, round-trips and takes LoRA; fast paths are exact."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from ltmia.errors import UnknownNameError
from ltmia.models import load_causal_lm
from ltmia.zoo.architectures import (
    ARCHITECTURES,
    ATTN_IMPLEMENTATION,
    ZooSize,
    build_model,
    count_parameters,
    disable_fast_paths,
    enable_fast_paths,
)
from ltmia.zoo.fast_mamba import selective_scan

VOCAB, EOS, PAD = 4096, 0, 1
FAMILIES = [
    "gpt2",
    "gpt_neox",
    "llama",
    "opt",
    "phi",
    "qwen2",
    "gpt_neo",
    "bloom",
    "mistral",
    "mamba",
    "rwkv",
    "recurrent_gemma",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These models are too small to gain from threads, and on a busy 2-core machine two OpenMP threads
    make every small op wait for a descheduled sibling (this file: ~15 s on 1 thread, minutes on 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(length: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of random tokens, the second right-padded over its last quarter as batches of texts are."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (2, length), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, -length // 4 :], mask[1, -length // 4 :] = PAD, 0
    return ids, mask


def _train_step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
    loss.backward()
    optimizer.step()
    return loss.item()


def test_registry_holds_exactly_the_zoo_families() -> None:
    assert ARCHITECTURES.names() == FAMILIES
    families = {name: ARCHITECTURES.get(name).family for name in FAMILIES}
    assert families["mamba"] == "state-space"
    assert families["rwkv"] == "linear-attention"
    assert families["recurrent_gemma"] == "gated-recurrence"
    assert {families[name] for name in FAMILIES[:9]} == {"transformer"}


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"choose one of: gpt2, gpt_neox, .*, recurrent_gemma$"):
        build_model("gpt5", VOCAB, EOS, PAD)


@pytest.mark.parametrize("arch", FAMILIES)
def test_default_size_is_tiny_tied_and_uses_the_given_special_ids(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD)
    assert 1_000_000 <= count_parameters(model) <= 5_000_000
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.bos_token_id == model.config.eos_token_id == EOS
    assert model.config.pad_token_id == PAD
    assert next(model.parameters()).dtype == torch.float32


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    first, again, other = (build_model("llama", VOCAB, EOS, PAD, seed=seed) for seed in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True))
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


@pytest.mark.parametrize("arch", FAMILIES)
def test_forward_gives_finite_logits_over_the_vocabulary(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).eval()
    ids, mask = _batch()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (2, 128, VOCAB)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", FAMILIES)
def test_other_sizes_build_and_run(arch: str) -> None:
    """An odd layer count and a shorter context exercise every family's mapping of the size knobs."""
    size = ZooSize(hidden=64, layers=3, heads=2, max_len=64)
    model = build_model(arch, 512, EOS, PAD, size=size).eval()
    assert count_parameters(model) < count_parameters(build_model(arch, 512, EOS, PAD))
    with torch.no_grad():
        assert model(input_ids=torch.randint(2, 512, (1, 64))).logits.shape == (1, 64, 512)


@pytest.mark.parametrize("arch", FAMILIES)
def test_a_train_step_gives_a_finite_loss_and_moves_the_weights(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert torch.isfinite(torch.tensor(_train_step(model, *_batch())))
    for name, p in model.named_parameters():
        if p.grad is not None and p.grad.any():
            assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize("arch", FAMILIES)
def test_save_and_load_round_trip_gives_identical_logits(arch: str, tmp_path: Path) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_causal_lm(str(tmp_path), attn_implementation=ATTN_IMPLEMENTATION)
    assert type(loaded) is type(model)
    ids, mask = _batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, expected)


@pytest.mark.parametrize("arch", FAMILIES)
def test_lora_on_the_declared_targets_trains_adapters_only(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD)
    targets = ARCHITECTURES.get(arch).lora_targets
    names = [name for name, _ in model.named_modules()]
    for target in targets:  # every declared suffix names real modules of this family
        assert any(name.endswith(f".{target}") for name in names), target
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=targets)
    peft_model = enable_fast_paths(get_peft_model(model, config)).train()
    base = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    _train_step(peft_model, *_batch())
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
        else:
            assert torch.equal(p, base[name]), name
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.any() for p in lora_b)  # every adapter is used


FAST_PATH_FAMILIES = ["mamba", "rwkv", "recurrent_gemma"]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("arch", FAST_PATH_FAMILIES)
def test_fast_paths_match_the_stock_paths(arch: str, train: bool) -> None:
    """Logits and all gradients agree with the stock ``transformers`` code paths, to float rounding."""
    fast = build_model(arch, VOCAB, EOS, PAD, seed=3).train(train)
    stock = disable_fast_paths(copy.deepcopy(fast))
    assert [type(m) for m in stock.modules()] != [type(m) for m in fast.modules()]
    ids, mask = _batch(length=96, seed=1)
    outputs = []
    for model in (fast, stock):
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        outputs.append((out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (fast_logits, fast_grads), (stock_logits, stock_grads) = outputs
    torch.testing.assert_close(fast_logits, stock_logits, rtol=1e-4, atol=1e-4)
    for name, grad in stock_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("arch", FAST_PATH_FAMILIES)
def test_fast_paths_hand_cached_generation_to_the_stock_paths(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).eval()
    ids, _ = _batch(length=24)
    with torch.no_grad():
        cached = model(input_ids=ids, use_cache=True).logits
        full = model(input_ids=ids).logits
        generated = model.generate(ids[:1, :8], max_new_tokens=4, do_sample=False, use_cache=True)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)
    assert generated.shape == (1, 12)


def _reference_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """The textbook loop over time steps."""
    h = torch.zeros(x.shape[0], *A.shape, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, 1)


@pytest.mark.parametrize("length", [1, 7, 33])
def test_selective_scan_is_the_recurrence_even_with_extreme_decays(length: int) -> None:
    """Lengths off the chunk grid, and steps decaying by up to exp(-2000), must not lose precision or NaN."""
    generator = torch.Generator().manual_seed(length)
    b, d, n = 2, 3, 4
    x = torch.randn(b, length, d, dtype=torch.float64, generator=generator)
    dt = torch.rand(b, length, d, dtype=torch.float64, generator=generator) * 100
    A = -torch.rand(d, n, dtype=torch.float64, generator=generator) * 20
    B, C = (torch.randn(b, length, n, dtype=torch.float64, generator=generator) for _ in range(2))
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C)]
    weights = torch.randn(b, length, d, dtype=torch.float64, generator=generator)
    results = []
    for scan in (selective_scan, _reference_scan):
        y = scan(*inputs)
        results.append((y, torch.autograd.grad((y * weights).sum(), inputs)))
    torch.testing.assert_close(results[0], results[1])
    assert torch.autograd.gradcheck(selective_scan, [t.detach().div(10).requires_grad_() for t in inputs])


def test_fast_paths_leave_transformers_alone() -> None:
    model = build_model("llama", VOCAB, EOS, PAD)
    classes = [type(m) for m in model.modules()]
    assert enable_fast_paths(model) is model
    assert [type(m) for m in disable_fast_paths(model).modules()] == classes
