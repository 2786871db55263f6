"""Precision: bf16 autocast where native, float32 logits always, and off-terminal progress lines."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from ltmia import device
from ltmia.errors import InputError
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.signals import extract


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert device.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(device, "cpu_bf16_flags", lambda: ())
    assert device.resolve_precision("auto") == "fp32"
    assert device.resolve_precision("bf16") == "bf16" and device.resolve_precision("fp32") == "fp32"
    with pytest.raises(InputError, match="precision 'fp16'"):
        device.resolve_precision("fp16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    """The bf16 flags among those of any core's ``flags`` line (not of other lines); none without a file."""
    with_bf16, without = tmp_path / "with", tmp_path / "without"  # cached per path: one file each
    with_bf16.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 avx512f\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 amx_bf16 avx512_bf16\n"
    )
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: amx_bf16\n")
    assert device.cpu_bf16_flags(with_bf16) == ("amx_bf16", "avx512_bf16")
    assert device.cpu_bf16_flags(without) == ()
    assert device.cpu_bf16_flags(tmp_path / "absent") == ()


def test_float32_head_gives_float32_logits_under_autocast(tiny_base):
    model = load_causal_lm(str(tiny_base))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), device.autocast("bf16", torch.device("cpu")):
        plain = model(input_ids=ids).logits
        with device.float32_head(model):
            kept = model(input_ids=ids).logits
    assert plain.dtype == torch.bfloat16 and kept.dtype == torch.float32
    assert "forward" not in vars(model.get_output_embeddings())  # the class's forward is back


@pytest.mark.slow
def test_bf16_extraction_stays_close_to_fp32(tiny_base, docstrings):
    model, tokenizer = load_causal_lm(str(tiny_base)), load_tokenizer(str(tiny_base))
    texts = docstrings[:6]
    exact = extract(model, model, tokenizer, texts)
    fast = extract(model, model, tokenizer, texts, precision="bf16")
    assert fast.features.dtype == torch.float32 and torch.equal(fast.mask, exact.mask)
    assert not torch.equal(fast.stats.target_logprob, exact.stats.target_logprob)  # bf16 did run
    gap = (fast.stats.target_logprob - exact.stats.target_logprob).abs().max()
    assert gap < 0.1


def test_progress_lines_off_a_terminal():
    from ltmia.progress import step_bar, text_bar

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with step_bar(console, log_every=2) as bar:
        on_step = bar.task("fine-tune")
        for step in range(5):
            on_step(1, 2.0 - step * 0.1)
    lines = [line for line in out.getvalue().splitlines() if line]
    assert lines[0].startswith("fine-tune: epoch 1, step 2, loss 1.9000") and "s/step" in lines[0]
    assert len(lines) == 2 and "step 4" in lines[1]
    out.truncate(0)
    out.seek(0)
    with text_bar(console, "target + reference") as on_texts:
        on_texts(3, 10)
        on_texts(10, 10)
    assert "target + reference: 10/10 texts" in out.getvalue()
