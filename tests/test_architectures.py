"""The zoo's architectures: every family builds, trains, round-trips and takes LoRA; fast paths are exact."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, MambaConfig, PretrainedConfig, RecurrentGemmaConfig, RwkvConfig

from ltmia.artefacts import write_manifest
from ltmia.errors import InputError, UnknownNameError
from ltmia.models import is_zoo_model, load_causal_lm, wants_fast_paths
from ltmia.zoo.architectures import (
    ARCHITECTURES,
    ATTN_IMPLEMENTATION,
    ZooSize,
    _FastRglru,
    _FastRwkvSelfAttention,
    build_model,
    count_parameters,
    disable_fast_paths,
    enable_fast_paths,
)
from ltmia.zoo.fast_mamba import FastMambaMixer, selective_scan

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
RECURRENT = {"mamba", "rwkv", "recurrent_gemma"}
FAMILIES_TIERED = [pytest.param(a, marks=pytest.mark.slow) if a in RECURRENT else a for a in FAMILIES]
"""The families, with the recurrent ones (1-2 s a test on CPU: Python time loops) in the slow tier only."""


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


@pytest.mark.parametrize("arch", FAMILIES_TIERED)
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


@pytest.mark.parametrize("arch", FAMILIES_TIERED)
def test_a_train_step_gives_a_finite_loss_and_moves_the_weights(arch: str) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert torch.isfinite(torch.tensor(_train_step(model, *_batch())))
    for name, p in model.named_parameters():  # every weight takes part: a gradient, and a step that moved it
        assert p.grad is not None and p.grad.any(), name
        assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize("arch", FAMILIES_TIERED)
def test_save_and_load_round_trip_gives_identical_logits(arch: str, tmp_path: Path) -> None:
    model = build_model(arch, VOCAB, EOS, PAD).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_causal_lm(str(tmp_path), attn_implementation=ATTN_IMPLEMENTATION, fast_paths=True)
    assert type(loaded) is type(model)
    ids, mask = _batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, expected)


@pytest.mark.parametrize("arch", FAMILIES_TIERED)
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
FAST_PATHS_TIERED = [pytest.param(a, marks=pytest.mark.slow) for a in ("mamba", "rwkv")] + ["recurrent_gemma"]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("arch", FAST_PATHS_TIERED)
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


@pytest.mark.parametrize("length", [1, 7, pytest.param(33, marks=pytest.mark.slow)])
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


FAST_CLASSES = (FastMambaMixer, _FastRwkvSelfAttention, _FastRglru)


def _has_fast_paths(model: torch.nn.Module) -> bool:
    return any(isinstance(module, FAST_CLASSES) for module in model.modules())


def test_loading_swaps_fast_paths_into_zoo_models_and_their_targets_only(tmp_path, monkeypatch) -> None:
    """A bare save_pretrained directory (anyone's model) runs the stock code; a directory whose manifest says
    ltmia's zoo wrote it, or a target whose base is one, gets the fast paths; the parameter and
    LTMIA_FAST_PATHS opt in or out."""
    model = build_model("mamba", VOCAB, EOS, PAD, ZooSize(hidden=32, layers=1, heads=2))
    bare, zoo, target, other_target = (tmp_path / name for name in ("bare", "zoo", "target", "other"))
    for path in (bare, zoo, target, other_target):
        model.save_pretrained(path)
    write_manifest(zoo, {"artefact": "ltmia-zoo-model", "architecture": "mamba"})
    write_manifest(target, {"artefact": "ltmia-target", "base": str(zoo)})
    write_manifest(other_target, {"artefact": "ltmia-target", "base": str(bare)})
    assert [is_zoo_model(str(p)) for p in (bare, zoo, target, other_target)] == [False, True, True, False]
    assert not is_zoo_model("someone/mamba-130m-hf") and not is_zoo_model(str(tmp_path / "missing"))
    loaded = {p.name: _has_fast_paths(load_causal_lm(str(p))) for p in (bare, zoo, target, other_target)}
    assert loaded == {"bare": False, "zoo": True, "target": True, "other": False}
    assert _has_fast_paths(load_causal_lm(str(bare), fast_paths=True))
    assert not _has_fast_paths(load_causal_lm(str(zoo), fast_paths=False))
    monkeypatch.setenv("LTMIA_FAST_PATHS", "1")
    assert wants_fast_paths(str(bare)) and _has_fast_paths(load_causal_lm(str(bare)))
    assert not wants_fast_paths(str(zoo), fast_paths=False)  # the parameter wins over the environment
    monkeypatch.setenv("LTMIA_FAST_PATHS", "off")
    assert not wants_fast_paths(str(zoo)) and not wants_fast_paths(str(bare))
    monkeypatch.setenv("LTMIA_FAST_PATHS", "auto")
    assert wants_fast_paths(str(zoo)) and not wants_fast_paths(str(bare))
    monkeypatch.setenv("LTMIA_FAST_PATHS", "sometimes")
    with pytest.raises(InputError, match="LTMIA_FAST_PATHS='sometimes': give 1"):
        wants_fast_paths(str(bare))


# Published models' layer shapes with 2 layers, a 512-token vocabulary and random weights: the recurrences
# run at their real widths (state size, heads, conv width), everything else stays small enough to be quick.
PUBLISHED_SHAPES: dict[str, PretrainedConfig] = {
    # state-spaces/mamba-130m-hf: d_model 768, d_inner 1536, d_state 16, dt_rank 48, conv 4
    "mamba-130m": MambaConfig(
        vocab_size=512,
        hidden_size=768,
        state_size=16,
        expand=2,
        conv_kernel=4,
        time_step_rank=48,
        num_hidden_layers=2,
        use_cache=False,
    ),
    # RWKV/rwkv-4-169m-pile: hidden 768, attention hidden 768, FFN 3072
    "rwkv-4-169m": RwkvConfig(
        vocab_size=512,
        hidden_size=768,
        attention_hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=2,
        context_length=1024,
        use_cache=False,
    ),
    # google/recurrentgemma-2b: hidden and LRU width 2560 in 10 heads (block width 256), conv 4; its MLP
    # (15,360) is cut to 512, which the RG-LRU never sees
    "recurrentgemma-2b": RecurrentGemmaConfig(
        vocab_size=512,
        hidden_size=2560,
        lru_width=2560,
        num_attention_heads=10,
        num_key_value_heads=1,
        intermediate_size=512,
        conv1d_width=4,
        num_hidden_layers=2,
        attention_window_size=2048,
        use_cache=False,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED_SHAPES))
def test_fast_paths_match_the_stock_paths_at_published_layer_shapes(name: str) -> None:
    """What makes the fast paths safe to opt into for other people's models: at a published model's widths
    the logits, the last hidden states and (training) every gradient agree with the stock ``transformers``
    code to float rounding, relative to their scale (measured: Mamba's chunked scan differs by ~3e-7 of
    the logits' range and ~4e-6 of a gradient's; RWKV's and RG-LRU's loops are bit-identical)."""
    torch.manual_seed(0)
    fast = enable_fast_paths(AutoModelForCausalLM.from_config(PUBLISHED_SHAPES[name], dtype=torch.float32))
    stock = disable_fast_paths(copy.deepcopy(fast))
    assert _has_fast_paths(fast) and not _has_fast_paths(stock)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 512, (2, 64), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, -16:] = 0
    outputs = []
    for model in (fast, stock):
        out = model.train()(input_ids=ids, attention_mask=mask, labels=ids, output_hidden_states=True)
        out.loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        outputs.append((out.logits.detach(), out.hidden_states[-1].detach(), grads))
    for got, expected in zip(outputs[0][:2], outputs[1][:2], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    fast_grads, stock_grads = outputs[0][2], outputs[1][2]
    assert all(grad is not None for grad in stock_grads.values())
    for n, grad in stock_grads.items():
        scale = grad.abs().max().item()
        assert scale > 0, n
        torch.testing.assert_close(fast_grads[n], grad, rtol=1e-4, atol=1e-4 * scale, msg=n)
