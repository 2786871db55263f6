"""``ltmia import-published``: the published classifier format (SPEC §8) read safely, mapped onto ltmia's
model with equal logits, and refused in one line when it names anything but tensors, plain values and
numpy scalars."""

from __future__ import annotations

import argparse
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from ltmia.audit.run import load_audit_classifier
from ltmia.classifier import LTMIA, ArraySource
from ltmia.classifier.published import import_published
from ltmia.cli import app
from ltmia.errors import InputError, OutputExistsError

K, D_IN, D, HEADS, LAYERS, FF, L = 2, 28, 16, 2, 2, 24, 12  # D_IN = 7k + 14


def spec_keys() -> set[str]:
    """The state-dict keys SPEC §8 lists for the published transformer."""
    keys = {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    for i in range(LAYERS):
        layer = f"encoder.layers.{i}."
        keys |= {layer + "self_attn.in_proj_weight", layer + "self_attn.in_proj_bias"}
        for name in ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"):
            keys |= {f"{layer}{name}.weight", f"{layer}{name}.bias"}
    for name in ("attn_pool.0", "attn_pool.2", "cls.0", "cls.3"):
        keys |= {f"{name}.weight", f"{name}.bias"}
    return keys


def published_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict as the published code's modules name it, every tensor (LayerNorms too) random."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, 0.05, batch_first=True)
    modules = {
        "proj": nn.Linear(D_IN, D),
        "norm": nn.LayerNorm(D),
        "encoder": nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False),
        "attn_pool": nn.Sequential(nn.Linear(D, D // 2), nn.Tanh(), nn.Linear(D // 2, 1)),
        "cls": nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Dropout(0.05), nn.Linear(D, 1)),
    }
    state = {f"{p}.{k}": v for p, m in modules.items() for k, v in m.state_dict().items()}
    return {key: value + 0.1 * torch.randn_like(value) for key, value in state.items()}


def write_checkpoint(path: Path, state: dict | None = None, **changes: object) -> Path:
    """The published file: a ``torch.save``d dict of SPEC §8's fields, sklearn-style numpy scalar metrics."""
    checkpoint = {
        "state_dict": state if state is not None else published_state(),
        "d_in": D_IN,
        "seq_len": L,
        "architecture": "transformer",
        "mia_hparams": {
            "d_model": D,
            "nhead": HEADS,
            "num_layers": LAYERS,
            "dim_ff": FF,
            "dropout": 0.05,
            "hidden_dims": [256, 128],
        },
        "config": {"lr": 9.88e-4, "epochs": 80, "models": ["distilgpt2", "gpt2-xl"]},
        "train_combinations": [["distilgpt2", "cnn_dailymail"], ["gpt2-xl", "wikipedia"]],
        "holdout_combinations": [["gpt2", "ag_news"]],
        "test_metrics": {"auc": np.float64(0.908), "tpr_at_1pct": np.float32(0.25), "n": np.int64(2000)},
        **changes,
    }
    torch.save(checkpoint, path)
    return path


def sinusoid(length: int, width: int) -> torch.Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i / width)), PE[t, 2i+1] = cos(same): the textbook table, written out."""
    table = torch.zeros(length, width)
    for t in range(length):
        for i in range(0, width, 2):
            angle = t / 10000 ** (i / width)
            table[t, i], table[t, i + 1] = math.sin(angle), math.cos(angle)
    return table


def reference_logits(state: dict, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SPEC §6's forward pass written from the published state dict with plain tensor ops (eval mode)."""

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    def layer_norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (D,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)

    batch, length, _ = features.shape
    x = layer_norm(linear(features, "proj"), "norm") + sinusoid(L, D)[:length]
    head = D // HEADS
    for i in range(LAYERS):
        p = f"encoder.layers.{i}."
        qkv = x @ state[p + "self_attn.in_proj_weight"].T + state[p + "self_attn.in_proj_bias"]
        q, k, v = (t.reshape(batch, length, HEADS, head).transpose(1, 2) for t in qkv.split(D, -1))
        weights = (q @ k.transpose(-1, -2) / math.sqrt(head)).masked_fill(~mask[:, None, None, :], -math.inf)
        attended = (weights.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, D)
        x = layer_norm(x + linear(attended, p + "self_attn.out_proj"), p + "norm1")
        x = layer_norm(x + linear(torch.relu(linear(x, p + "linear1")), p + "linear2"), p + "norm2")
    pool = linear(torch.tanh(linear(x, "attn_pool.0")), "attn_pool.2").squeeze(-1)
    pooled = (pool.masked_fill(~mask, -math.inf).softmax(-1)[..., None] * x).sum(1)
    return linear(torch.relu(linear(pooled, "cls.0")), "cls.3").squeeze(-1)


def features_and_mask(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, L, D_IN) features zeroed past each row's length (SPEC §4), (n, L) mask; the last step pads."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([L - 1, 3, 7, 1, 10, 5])[:n]
    mask = torch.arange(L)[None, :] < lengths[:, None]
    features = torch.randn(n, L, D_IN, generator=generator) * mask[..., None]
    return features, mask


def test_the_test_checkpoint_has_exactly_the_spec_keys_and_needs_numpy_globals(tmp_path):
    path = write_checkpoint(tmp_path / "mia.pt")
    assert set(published_state()) == spec_keys()
    with pytest.raises(pickle.UnpicklingError, match="numpy"):  # torch alone refuses the numpy scalars
        torch.load(path, weights_only=True)


@pytest.mark.slow
def test_import_gives_the_published_logits(tmp_path):
    state = published_state()
    out = import_published(write_checkpoint(tmp_path / "mia.pt", state), tmp_path / "clf")
    features, mask = features_and_mask()
    classifier = LTMIA.load(out)
    logits = classifier.decision_function(features, mask)
    with torch.no_grad():
        expected = reference_logits(state, features, mask).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert np.std(expected) > 0.01  # the rows differ, so a wrong mapping could not match by chance
    record = json.loads((out / "classifier.json").read_text())
    assert record["k"] == K and record["feature_dim"] == D_IN and record["seq_len"] == L
    sizes = {name: record["config"][name] for name in ("d_model", "heads", "layers", "ff", "variant")}
    assert sizes == {"d_model": D, "heads": HEADS, "layers": LAYERS, "ff": FF, "variant": "transformer"}
    assert record["metrics"]["published_test_metrics"] == {"auc": 0.908, "tpr_at_1pct": 0.25, "n": 2000}
    assert record["training"]["published"]["holdout_combinations"] == [["gpt2", "ag_news"]]
    assert len(record["training"]["imported"]["sha256"]) == 64
    # what evaluate and audit --classifier do with it: score a store-like source, pass the layout check
    source = ArraySource(features, mask, [1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(classifier.score(source, split=None), expected, rtol=1e-5, atol=1e-5)
    assert load_audit_classifier(out).record_["k"] == K
    with pytest.raises(OutputExistsError):
        import_published(tmp_path / "mia.pt", out)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"test_metrics": {"roc": np.arange(3.0)}}, "numpy"),  # an array: not a scalar reconstructor
        ({"config": argparse.Namespace(lr=1.0)}, "argparse.Namespace"),
    ],
)
def test_other_globals_are_refused_in_one_line(tmp_path, extra, named):
    path = write_checkpoint(tmp_path / "mia.pt", **extra)
    with pytest.raises(InputError, match=f"needs {named}") as error:
        import_published(path, tmp_path / "clf")
    assert "\n" not in str(error.value) and not (tmp_path / "clf").exists()


def test_a_state_dict_of_another_model_is_refused(tmp_path):
    state = published_state()
    wrong = {**state, "extra.weight": torch.zeros(2)}
    with pytest.raises(InputError, match=r"unexpected state_dict entry 'extra\.weight'"):
        import_published(write_checkpoint(tmp_path / "a.pt", wrong), tmp_path / "a")
    short = {k: v for k, v in state.items() if not k.startswith("encoder.layers.1.")}
    with pytest.raises(InputError, match="does not fit"):
        import_published(write_checkpoint(tmp_path / "b.pt", short), tmp_path / "b")
    with pytest.raises(InputError, match="architecture is 'mlp'"):
        import_published(write_checkpoint(tmp_path / "c.pt", architecture="mlp"), tmp_path / "c")


@pytest.mark.slow
def test_cli_import_published(tmp_path):
    good = write_checkpoint(tmp_path / "good.pt")
    done = CliRunner().invoke(app, ["import-published", str(good), "--out", str(tmp_path / "clf")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "clf" / "model.safetensors").exists() and "--classifier" in done.output
    code = "import sys; from ltmia.cli import main; sys.argv = ['ltmia', *sys.argv[1:]]; main()"
    bad = write_checkpoint(tmp_path / "bad.pt", config=argparse.Namespace(lr=1.0))
    result = subprocess.run(
        [sys.executable, "-c", code, "import-published", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "needs argparse.Namespace" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
