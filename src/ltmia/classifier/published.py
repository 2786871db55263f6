"""The published LT-MIA classifier (SPEC §8) as an ltmia classifier directory (``ltmia import-published``).

The published file is a ``torch.save``d dict ``{state_dict, d_in, seq_len, architecture, mia_hparams{d_model,
nhead, num_layers, dim_ff, dropout, hidden_dims}, config, train_combinations, holdout_combinations,
test_metrics}``. It is a pickle, so it is read with ``torch.load(weights_only=True)``: tensors, numbers,
strings and plain containers only, plus numpy's scalar and dtype reconstructors (``test_metrics`` come from
sklearn and may be numpy scalars). Anything else the file names (a class, a function, a numpy array) is
refused in one line before it is built, never unpickled.

Its transformer has exactly ltmia's SPEC §6 model under other names: ``proj`` is ltmia's ``embed``,
``attn_pool`` its ``pool_score`` and ``cls`` its ``head``; ``norm`` and the ``torch.nn.TransformerEncoder``
(``encoder.layers.{i}.*``) are named alike, and neither saves the sinusoidal position table. So the import
renames keys, loads them strictly (every key, every shape) and writes safetensors + JSON like
``ltmia train`` does, after which ``evaluate`` and ``audit --classifier`` read it as any other classifier.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from ltmia.classifier.checkpoint import check_new_output, save_classifier
from ltmia.classifier.model import ClassifierConfig, build_classifier
from ltmia.classifier.train import TrainSettings
from ltmia.errors import InputError
from ltmia.features import feature_groups

RENAMES = {
    "proj.": "embed.",
    "norm.": "norm.",
    "encoder.": "encoder.",
    "attn_pool.": "pool_score.",
    "cls.": "head.",
}
"""Published state-dict prefix -> ltmia's (``SequenceClassifier``); every key starts with one of them."""
REQUIRED = ("state_dict", "d_in", "seq_len", "architecture", "mia_hparams")
HPARAMS = {
    "d_model": "d_model",
    "nhead": "heads",
    "num_layers": "layers",
    "dim_ff": "ff",
    "dropout": "dropout",
}
"""Published ``mia_hparams`` -> ``ClassifierConfig`` field (``hidden_dims`` sizes MLP variants only)."""


def numpy_scalar_globals() -> list:
    """What numpy scalars need to unpickle: the scalar reconstructor (under numpy 1's and numpy 2's module
    names, since the file may come from either), ``numpy.dtype`` and the concrete dtype classes of bool,
    integer, float and complex. No array reconstructor: arrays are not part of the format."""
    scalar = np.float64(0).__reduce__()[0]  # numpy._core.multiarray.scalar (numpy.core.… in numpy 1)
    allowed: list = [(scalar, f"{module}.multiarray.scalar") for module in ("numpy.core", "numpy._core")]
    allowed.append(np.dtype)
    kinds: tuple[type, ...] = (np.bool_, np.int8, np.int16, np.int32, np.int64)
    kinds += (np.uint8, np.uint16, np.uint32, np.uint64)
    kinds += (np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128)
    allowed += list(dict.fromkeys(type(np.dtype(kind)) for kind in kinds))
    return allowed


def load_published(path: Path) -> dict:
    """The published checkpoint's dict, read with ``weights_only=True`` and numpy scalars allowed; a file
    that needs any other global is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass the published checkpoint (mia_combined_400k.pt)")
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.findall(r"GLOBAL (\S+)", str(error))
        what = f"needs {found[0]}" if found else f"cannot be read safely ({str(error).splitlines()[0]})"
        raise InputError(
            f"{path} {what}, which ltmia does not unpickle (only tensors, numbers, strings, containers and "
            "numpy scalars); it is not the published classifier format (SPEC §8)"
        ) from None
    except (RuntimeError, OSError, EOFError) as error:
        raise InputError(f"{path} is not a torch checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError(f"{path} holds {keys}; the published format has {', '.join(REQUIRED)} (SPEC §8)")
    return checkpoint


def plain(value: object) -> object:
    """A checkpoint value as JSON: numpy scalars as numbers, tensors and tuples as lists, dict keys as str."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return plain(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def published_config(checkpoint: dict) -> ClassifierConfig:
    """``ClassifierConfig`` of the published transformer; another architecture or a feature width that is
    not 7k + 14 (SPEC §4) is an InputError."""
    architecture = str(checkpoint["architecture"])
    if architecture.lower() != "transformer":
        raise InputError(
            f"the checkpoint's architecture is {architecture!r}; only the published transformer's state-dict "
            "keys are known (SPEC §8)"
        )
    hparams = checkpoint["mia_hparams"]
    missing = [name for name in HPARAMS if name not in hparams]
    if missing:
        raise InputError(f"the checkpoint's mia_hparams lack {', '.join(missing)} (SPEC §8)")
    d_in = int(checkpoint["d_in"])
    if (d_in - 14) % 7 or d_in <= 14:
        raise InputError(f"the checkpoint reads {d_in} features per position, not 7k + 14 (SPEC §4)")
    sizes = {ours: hparams[theirs] for theirs, ours in HPARAMS.items()}
    sizes = {key: float(value) if key == "dropout" else int(value) for key, value in sizes.items()}
    return ClassifierConfig(
        variant="transformer", feature_dim=d_in, seq_len=int(checkpoint["seq_len"]), **sizes
    )


def renamed_state(state: dict) -> dict[str, torch.Tensor]:
    """Published keys -> ltmia's ``SequenceClassifier`` keys; a key under no known prefix is an InputError."""
    out = {}
    for key, tensor in state.items():
        prefix = next((p for p in RENAMES if key.startswith(p)), None)
        if prefix is None or not isinstance(tensor, torch.Tensor):
            raise InputError(
                f"unexpected state_dict entry {key!r}; the published transformer has only "
                f"{', '.join(p.rstrip('.') for p in RENAMES)} (SPEC §8)"
            )
        out[RENAMES[prefix] + key[len(prefix) :]] = tensor.detach().to(torch.float32)
    return out


def import_published(checkpoint_path: Path, out: Path) -> Path:
    """Read the published checkpoint and write it as the ltmia classifier directory ``out``; returns it."""
    checkpoint_path, out = Path(checkpoint_path), Path(out)
    check_new_output(out)
    checkpoint = load_published(checkpoint_path)
    config = published_config(checkpoint)
    model = build_classifier(config)
    try:
        model.load_state_dict(renamed_state(checkpoint["state_dict"]), strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise InputError(
            f"{checkpoint_path}: the state_dict does not fit SPEC §6's model ({detail[:300]})"
        ) from None
    k = (config.feature_dim - 14) // 7
    training = {
        "settings": TrainSettings().record(),
        "settings_note": "SPEC §6 defaults, not read from the file; its own config is under 'published'",
        "history": [],
        "imported": {
            "file": str(checkpoint_path.resolve()),
            "sha256": hashlib.sha256(checkpoint_path.read_bytes()).hexdigest(),
            "renamed": {theirs.rstrip("."): ours.rstrip(".") for theirs, ours in RENAMES.items()},
        },
        "published": {
            key: plain(checkpoint.get(key))
            for key in ("architecture", "mia_hparams", "config", "train_combinations", "holdout_combinations")
        },
    }
    metrics = {
        "best_epoch": None,
        "best_val_auc": None,
        "published_test_metrics": plain(checkpoint.get("test_metrics")),
    }
    return save_classifier(
        model.eval(), config, out, groups=list(feature_groups(k)), k=k, training=training, metrics=metrics
    )
