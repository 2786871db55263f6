"""Classifier checkpoints (SPEC §6): a directory of ``model.safetensors`` + ``classifier.json``.

Like every ltmia artefact it is written under ``<out>.partial`` and renamed when whole
(``ltmia.artefacts.building``), and its record holds the size and SHA-256 of the weights, checked on load
(checkpoints written before that record none). Weights are safetensors and the record JSON, so loading a
checkpoint never unpickles anything. The record names the feature layout the classifier reads (layout
version, k, feature dim, L): features of another layout would be silently misread, so
`check_store_compatible` refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ltmia.artefacts import building, check_scratch, read_manifest, verify_artefact, versions, write_manifest
from ltmia.classifier.batches import LAYOUT_KEYS, Source, layout, source_name
from ltmia.classifier.model import ClassifierConfig, build_classifier
from ltmia.errors import DamagedError, InputError, OutputExistsError, SettingsError
from ltmia.features import FEATURE_LAYOUT_VERSION

CLASSIFIER_ARTEFACT = "ltmia-classifier"
RECORD_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"


SHIPPED_DEFAULT = "real"
"""The shipped classifier that ``audit`` and ``evaluate`` use unless told otherwise (and ``shipped = true``
in a study config)."""


def shipped_root() -> Path:
    """Where the classifiers shipped with ltmia live (package data): one directory per name."""
    return Path(str(resources.files("ltmia.classifier") / "shipped"))


def shipped_names() -> list[str]:
    """The names of the shipped classifiers: ``real`` (offline-real's lt-mia-scores, trained on the zoo and
    SmolLM2-135M fine-tuned with four recipes) and ``zoo`` (offline-full's, trained on the zoo alone)."""
    root = shipped_root()
    return sorted(p.name for p in root.iterdir() if (p / WEIGHTS_FILE).exists()) if root.is_dir() else []


def shipped_dir(name: str | None = None) -> Path:
    """The directory of shipped classifier ``name`` (default `SHIPPED_DEFAULT`); its ``study.json`` names the
    study that trained it."""
    return shipped_root() / (name or SHIPPED_DEFAULT)


def shipped_classifier(name: str | None = None) -> Path:
    """`shipped_dir` of ``name``, checked: an ltmia that does not ship it is one line."""
    folder = shipped_dir(name)
    if not (folder / WEIGHTS_FILE).exists():
        raise InputError(
            f"this ltmia has no shipped classifier {folder.name!r} ({folder}); pass --classifier DIR, or "
            "train one (ltmia train, ltmia study run offline-full)"
        )
    return folder


def classifier_dir(path: Path | str | None) -> Path:
    """The classifier directory ``path`` names: a directory, a shipped classifier's name (when no such
    directory exists), or (None) the default shipped one."""
    if path is not None and (Path(path).exists() or str(path) not in shipped_names()):
        return Path(path)
    return shipped_classifier(None if path is None else str(path))


def check_shipped_name(name: str, where: str) -> str:
    """``name`` if ltmia ships a classifier by that name, else one line listing those it ships."""
    names = shipped_names()
    if name not in names:
        shipped = ", ".join(names) or "none"
        raise InputError(f"{where}: no shipped classifier {name!r}; shipped: {shipped}")
    return name


def is_classifier(out: Path) -> bool:
    """Whether ``out`` is a finished classifier directory."""
    record = read_manifest(out, RECORD_FILE) if Path(out).is_dir() else None
    return record is not None and record.get("artefact") == CLASSIFIER_ARTEFACT


def check_new_output(out: Path, overwrite: bool = False) -> None:
    """Refuse an existing ``out`` (as ``building`` will) before any training time is spent on it; with
    ``overwrite`` a finished classifier there may be replaced (nothing else)."""
    check_scratch(out)
    if not Path(out).exists() or (overwrite and is_classifier(out)):
        return
    if is_classifier(out):
        raise OutputExistsError(
            f"{out} holds a trained classifier already; choose another output directory, or pass "
            "--overwrite to replace it"
        )
    raise OutputExistsError(
        f"{out} exists and is not a classifier; choose another output directory (ltmia does not "
        "overwrite what it did not write)"
    )


def save_classifier(
    model: nn.Module,
    config: ClassifierConfig,
    out: Path,
    *,
    groups: Sequence[str],
    k: int,
    training: dict,
    metrics: dict,
    overwrite: bool = False,
    score_inputs: Sequence[str] = (),
) -> Path:
    """Write ``model`` (weights) and its record (config, kept feature groups, feature layout, the training
    record, metrics, package versions, the weights' checksum) to the directory ``out``, atomically;
    returns ``out``. ``overwrite`` replaces a classifier already there. With ``score_inputs`` the model reads
    D + S dims; the record's layout ``feature_dim`` stays the stores' D, and the names are recorded (only
    then, so checkpoints without them are written as before)."""
    out = Path(out)
    check_new_output(out, overwrite)
    record = {
        "artefact": CLASSIFIER_ARTEFACT,
        "config": config.record(),
        "groups": list(groups),
        "k": k,
        "seq_len": config.seq_len,
        "feature_dim": config.feature_dim - len(score_inputs),
        "feature_layout_version": FEATURE_LAYOUT_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": training,
        "metrics": metrics,
        "versions": versions(),
        **({"score_inputs": list(score_inputs)} if score_inputs else {}),
    }
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with building(out, what="classifier", replace=overwrite and out.exists()) as partial:
        save_file(weights, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        write_manifest(partial, record, RECORD_FILE)
    return out


def load_classifier(path: Path) -> tuple[nn.Module, dict]:
    """A checkpoint directory -> (model on CPU in eval mode, record); ``record["path"]`` is ``path``."""
    path = Path(path)
    record = (read_manifest(path, RECORD_FILE) if path.is_dir() else None) or {}
    if record.get("artefact") != CLASSIFIER_ARTEFACT:
        raise InputError(f"{path} is not a classifier directory; write one with ltmia train")
    verify_artefact(path, record, "the classifier is damaged: train it again (ltmia train --overwrite)")
    try:
        model = build_classifier(ClassifierConfig(**record["config"]))
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    except (SettingsError, TypeError, RuntimeError, OSError, KeyError, SafetensorError) as error:
        first_line = str(error).splitlines()[0]
        raise DamagedError(
            f"{path} is a damaged classifier checkpoint ({first_line}); train it again"
        ) from None
    record["path"] = str(path)
    return model.eval(), record


def describe_layout(values: dict) -> str:
    return (
        f"feature layout v{values['feature_layout_version']}, k={values['k']}, "
        f"D={values['feature_dim']}, L={values['seq_len']}"
    )


def check_store_compatible(record: dict, store: Source) -> None:
    """Refuse a store (or any source) whose feature layout differs from the one the classifier read."""
    expected = {key: record[key] for key in LAYOUT_KEYS}
    found = layout(store)
    if found != expected:
        raise InputError(
            f"classifier {record.get('path') or '(not saved)'} expects {describe_layout(expected)}; "
            f"store {source_name(store)} has {describe_layout(found)}; "
            "re-extract the store or train a classifier on it"
        )
