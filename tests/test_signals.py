"""The signal engine: memory budget (sub-batches, chunks) never changes results; exact rank counts."""

from __future__ import annotations

import logging
from dataclasses import fields

import pytest
import torch

from ltmia import lm_head
from ltmia.data import SEQ_LEN
from ltmia.errors import InputError
from ltmia.features import count_greater
from ltmia.signals import extract, head_block_positions, sub_batch_size
from ltmia.store import Rows, StoreSettings, store_plan
from ltmia.tokenstats import TokenStats
from ltmia.zoo.architectures import ZooSize, build_model

TINY = ZooSize(hidden=32, layers=1, heads=2)


@pytest.fixture(scope="module")
def models(tokenizer):
    target, reference = (
        build_model("llama", 512, tokenizer.eos_token_id, tokenizer.pad_token_id, TINY, seed=seed).eval()
        for seed in (0, 1)
    )
    return target, reference


@pytest.fixture(scope="module")
def texts(docstrings):
    return docstrings[:7]  # 7 texts: batches of 3 leave a ragged last batch and sub-batch


def logits_bytes(texts: int) -> int:
    """Bytes of the two models' float32 logits for ``texts`` texts of the tiny models (V = 512)."""
    return 2 * texts * SEQ_LEN * 512 * 4


def assert_same_signals(a, b) -> None:
    assert torch.equal(a.features, b.features)
    assert torch.equal(a.mask, b.mask)
    for field in fields(TokenStats):
        assert torch.equal(getattr(a.stats, field.name), getattr(b.stats, field.name)), field.name


@pytest.mark.slow
def test_results_do_not_depend_on_the_memory_budget(models, tokenizer, texts, caplog) -> None:
    whole = extract(*models, tokenizer, texts, batch_size=3)
    # two texts per forward pass and 42-position chunks (positions of one text split across chunks)
    split = extract(*models, tokenizer, texts, batch_size=3, memory_budget_bytes=2 * logits_bytes(2))
    with caplog.at_level(logging.WARNING, logger="ltmia.signals"):
        tiny = extract(*models, tokenizer, texts, batch_size=3, memory_budget_bytes=1)  # 1 text, 1 position
    assert "below one text's logits" in caplog.text
    assert whole.features.shape == (len(texts), SEQ_LEN, 154)
    assert_same_signals(split, whole)
    assert_same_signals(tiny, whole)


@pytest.mark.slow
@pytest.mark.parametrize("deferred", [True, False])
def test_forward_passes_stay_within_the_budget(models, tokenizer, texts, deferred, monkeypatch) -> None:
    """Deferred heads: 2^18 bytes leave 2^17 for the passes, 2 x 16 x 512 x 4 = 2^16 of them to the logit
    blocks (16 positions each) and 2^15 per text of hidden states (2 x 128 x 32 x 4): 2 texts per pass.
    Materialised logits: twice the logits of 2 texts gives 2 texts per pass too."""
    if not deferred:
        monkeypatch.setattr(lm_head, "DEFERRABLE", frozenset())
    target, reference = models
    seen = []
    hook = target.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    done = []
    try:
        extract(
            target,
            reference,
            tokenizer,
            texts,
            batch_size=3,
            memory_budget_bytes=2**18 if deferred else 2 * logits_bytes(2),
            on_batch=done.append,
        )
    finally:
        hook.remove()
    assert seen == [2, 1, 2, 1, 1]  # batches of 3, 3, 1 texts, each in sub-batches of at most 2
    assert done == seen and sum(done) == len(texts)


def test_sub_batch_size() -> None:
    gib = 2**30
    assert sub_batch_size(16, 128, 256_000, gib) == 2  # Gemma-size vocabulary: 256 MiB of logits per text
    assert sub_batch_size(16, 128, 4096, gib) == 16  # zoo vocabulary: the whole batch fits
    assert sub_batch_size(16, 128, 256_000, 2**20) == 1  # below one text: one at a time (and a warning)
    with pytest.raises(InputError, match="positive"):
        sub_batch_size(16, 128, 4096, 0)
    # deferred heads hold 640 KiB of hidden states per text (H = 640) beside 256 MiB of logit blocks
    assert sub_batch_size(16, 128, 262_144, gib, (640, 640)) == 16
    assert sub_batch_size(512, 128, 262_144, gib, (640, 640)) == 409  # (512 - 256) MiB / 640 KiB
    assert sub_batch_size(16, 128, 262_144, gib, (640, None)) == 1  # one model's logits: 128 MiB per text


def test_head_blocks_take_a_quarter_of_the_budget() -> None:
    gib = 2**30
    assert head_block_positions(262_144, gib) == 128  # 2 x 128 x 1 MiB = 256 MiB
    assert head_block_positions(49_152, gib) == 512  # capped: more rows no longer speed the product up
    assert head_block_positions(262_144, 1) == 1


def test_memory_budget_is_a_setting_but_not_part_of_the_store_plan() -> None:
    small, large = StoreSettings(memory_budget_bytes=2**20), StoreSettings()
    assert small.plan() == large.plan() and "memory_budget_bytes" not in large.plan()
    rows = Rows(["a text", "another"], [1, 0])
    assert store_plan(rows, small, "text", {}, {}) == store_plan(rows, large, "text", {}, {})
    with pytest.raises(InputError, match="memory budget"):
        StoreSettings(memory_budget_bytes=0)


def brute_count_greater(z: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    return (z[:, :, None] > queries[:, None, :]).sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_count_greater_is_exact_on_wide_rows_with_ties(dtype) -> None:
    """The binned count equals brute force, with low-precision ties and degenerate rows."""
    generator = torch.Generator().manual_seed(1)
    z = (torch.randn(6, 5000, generator=generator) * 4).to(dtype).float()
    z[1] = 2.5  # one value everywhere: every logit shares the query's bin
    z[2, :4000] = -7.0  # a spike of ties
    z[3, ::2] = torch.finfo(torch.float32).max / 4  # a huge span: most logits land in the end bins
    queries = z.gather(-1, torch.randint(0, 5000, (6, 41), generator=generator))
    queries[0, :3] = torch.tensor([-1e9, 1e9, 0.123])  # outside the row's range, and a value not in it
    assert torch.equal(count_greater(z, queries), brute_count_greater(z, queries))


def test_count_greater_on_signed_zeros_and_tiny_spans() -> None:
    z = torch.tensor([[0.0, -0.0, 1e-45, -1e-45, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0 + 2**-23]])
    queries = torch.tensor([[-0.0, 0.0, 1e-45], [1.0, 1.0 + 2**-23, 0.5]])
    assert torch.equal(count_greater(z, queries), brute_count_greater(z, queries))
