"""The LT-MIA classifier (SPEC §6): model and variants, streamed training, checkpoints, and `LTMIA`.

`LTMIA` is the estimator in the scikit-learn spirit: every parameter explicit in ``__init__`` and stored as
given, validated in ``fit``; ``fit`` on the train rows of feature stores (or ArraySource objects), then
``score`` a store's split, or ``predict_proba`` / ``decision_function`` on arrays; ``save`` / ``load`` a
checkpoint directory.

    clf = LTMIA(epochs=80).fit(["runs/stores/llama-wordnet", "runs/stores/gpt2-fortunes"])
    logits = clf.score("runs/stores/mamba-wordnet", split="test")
    clf.save("runs/classifiers/lt-mia")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor

from ltmia.classifier.batches import (
    LAYOUT_KEYS,
    ArraySource,
    Source,
    combo_weights,
    common_layout,
    dropped_indices,
    predict_logits,
    score_source,
)
from ltmia.classifier.checkpoint import check_store_compatible, load_classifier, save_classifier
from ltmia.classifier.model import VARIANTS, ClassifierConfig, build_classifier
from ltmia.classifier.score_inputs import SCORE_INPUTS, ScoredSource, check_score_inputs, widen
from ltmia.classifier.train import OnEpoch, TrainResult, TrainSettings, train_classifier
from ltmia.device import resolve_device
from ltmia.errors import InputError, SettingsError
from ltmia.settings import check_keys, default
from ltmia.settings.classifier import CONFIG_PARAMS, MODEL_PARAMS

__all__ = [
    "CONFIG_PARAMS",
    "LTMIA",
    "SCORE_INPUTS",
    "VARIANTS",
    "ArraySource",
    "ClassifierConfig",
    "Source",
    "TrainResult",
    "TrainSettings",
    "build_classifier",
    "check_params",
    "check_store_compatible",
    "combo_weights",
    "load_classifier",
    "save_classifier",
    "train_classifier",
]

SourceLike = Source | str | Path


def check_params(params: dict, where: str) -> None:
    """`LTMIA` keyword arguments from a config table, validated now, so a typo or a bad value fails when
    the config is read rather than hours later when the classifier trains (feature groups: the caller)."""
    check_keys(params, CONFIG_PARAMS, where)
    ClassifierConfig.from_table({k: v for k, v in params.items() if k in MODEL_PARAMS}, where)
    TrainSettings.from_table({k: v for k, v in params.items() if k in TrainSettings.model_fields}, where)
    variant = params.get("variant", default(ClassifierConfig, "variant"))
    if variant not in VARIANTS:
        raise SettingsError(f"{where}: unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")


def as_source(source: SourceLike) -> Source:
    """A store path becomes an ``ltmia.store.Store``; sources pass through."""
    if isinstance(source, (str, Path)):
        from ltmia.store import Store

        return Store(Path(source))
    return source


def as_sources(sources: SourceLike | Sequence[SourceLike]) -> list[Source]:
    """One source or path, or a sequence of them -> a list of sources."""
    if isinstance(sources, (str, Path)) or hasattr(sources, "iter_shards"):
        return [as_source(cast(SourceLike, sources))]
    return [as_source(source) for source in sources]


class LTMIA:
    """Learned transfer membership inference: a classifier of per-token features -> P(member).

    Model parameters size ``ClassifierConfig``, training parameters ``TrainSettings`` (defaults: the
    paper's, SPEC §6). ``groups`` keeps a subset of the SPEC §4 feature groups (default all).
    ``score_inputs`` (not in the paper; ``ltmia.classifier.score_inputs``) names one-pass baseline scores
    the model also reads, appended to every position; such a classifier scores feature stores only. After
    ``fit`` (or ``load``): ``model_``, ``config_``, ``history_``, ``best_epoch_``, ``best_val_auc_``,
    ``groups_``.
    """

    def __init__(
        self,
        variant: str = default(ClassifierConfig, "variant"),
        *,
        d_model: int = default(ClassifierConfig, "d_model"),
        heads: int = default(ClassifierConfig, "heads"),
        layers: int = default(ClassifierConfig, "layers"),
        ff: int = default(ClassifierConfig, "ff"),
        dropout: float = default(ClassifierConfig, "dropout"),
        mlp_hidden: int = default(ClassifierConfig, "mlp_hidden"),
        groups: Sequence[str] | None = None,
        score_inputs: Sequence[str] = (),
        lr: float = default(TrainSettings, "lr"),
        weight_decay: float = default(TrainSettings, "weight_decay"),
        label_smoothing: float = default(TrainSettings, "label_smoothing"),
        batch_size: int = default(TrainSettings, "batch_size"),
        epochs: int = default(TrainSettings, "epochs"),
        warmup_epochs: int = default(TrainSettings, "warmup_epochs"),
        min_lr: float = default(TrainSettings, "min_lr"),
        grad_clip: float | None = default(TrainSettings, "grad_clip"),
        patience: int | None = default(TrainSettings, "patience"),
        seed: int = default(TrainSettings, "seed"),
        micro_batch_size: int = default(TrainSettings, "micro_batch_size"),
        memory_budget_bytes: int = default(TrainSettings, "memory_budget_bytes"),
        device: str = default(TrainSettings, "device"),
    ) -> None:
        self.variant = variant
        self.d_model = d_model
        self.heads = heads
        self.layers = layers
        self.ff = ff
        self.dropout = dropout
        self.mlp_hidden = mlp_hidden
        self.groups = groups
        self.score_inputs = score_inputs
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.grad_clip = grad_clip
        self.patience = patience
        self.seed = seed
        self.micro_batch_size = micro_batch_size
        self.memory_budget_bytes = memory_budget_bytes
        self.device = device

    def settings(self) -> TrainSettings:
        """The training parameters as validated ``TrainSettings``."""
        return TrainSettings(**{name: getattr(self, name) for name in TrainSettings.model_fields})

    def config(self, feature_dim: int, seq_len: int) -> ClassifierConfig:
        """The model parameters as a validated ``ClassifierConfig`` for features of this layout."""
        sizes = {name: getattr(self, name) for name in MODEL_PARAMS}
        return ClassifierConfig(**sizes, feature_dim=feature_dim, seq_len=seq_len)

    def fit(
        self,
        sources: SourceLike | Sequence[SourceLike],
        val_sources: SourceLike | Sequence[SourceLike] | None = None,
        on_epoch: OnEpoch | None = None,
        checkpoints: Path | str | None = None,
    ) -> LTMIA:
        """Train on the "train" rows of ``sources`` (stores, store paths or ArraySource objects), each combo
        with equal total weight; keep the epoch with the best AUC on the "val" rows of ``val_sources``
        (default: ``sources``). ``on_epoch(entry)`` is called after every epoch. ``checkpoints``: a
        directory for the state after each epoch, from which the same training, killed, continues
        (``ltmia.train_state``; one directory per training, removed by the caller when done)."""
        names = check_score_inputs(self.score_inputs)
        train = as_sources(sources)
        val = None if val_sources is None else as_sources(val_sources)
        found = common_layout(train + (val or []))
        if names:
            train = [ScoredSource(source, names) for source in train]
            val = None if val is None else [ScoredSource(source, names) for source in val]
        config = self.config(found["feature_dim"] + len(names), found["seq_len"])
        saved = None if checkpoints is None else Path(checkpoints)
        result = train_classifier(train, config, self.settings(), self.groups, val, on_epoch, saved)
        self._set_fitted(result.model, config, found, result.groups, None, names)
        self.history_, self.best_epoch_ = result.history, result.best_epoch
        self.best_val_auc_, self.training_ = result.best_val_auc, result.record
        return self

    def _set_fitted(
        self,
        model: torch.nn.Module,
        config: ClassifierConfig,
        layout: dict,
        groups: list,
        path: str | None,
        score_inputs: tuple[str, ...] = (),
    ) -> None:
        """Fitted state; ``record_`` (the stores' feature layout, checkpoint path) is what stores are checked
        against; with ``score_inputs_`` the model reads D + S dims of which the stores hold D."""
        self.model_, self.config_, self.groups_ = model, config, groups
        self.score_inputs_ = score_inputs
        self.record_ = {**layout, "path": path}
        self._dropped = dropped_indices(groups, layout["k"])

    def _model(self) -> torch.nn.Module:
        """The fitted model on the scoring device."""
        if not hasattr(self, "model_"):
            raise InputError("this LTMIA is not fitted yet; call fit or load first")
        return self.model_.to(resolve_device(self.device)).eval()

    def decision_function(
        self,
        features: np.ndarray | Tensor,
        mask: np.ndarray | Tensor,
        text_scores: np.ndarray | Tensor | None = None,
    ) -> np.ndarray:
        """(N, L, D) features (numpy or torch, any float dtype), (N, L) mask -> (N,) float32 logits.

        A classifier with score inputs also needs ``text_scores``, the (N, S) squashed scores of the same
        texts (``ltmia.classifier.score_inputs.text_scores`` of their token stats); they are broadcast to
        every position as in training.
        """
        model = self._model()
        features, mask = torch.as_tensor(features), torch.as_tensor(mask).bool()
        dim, length = self.config_.feature_dim - len(self.score_inputs_), self.config_.seq_len
        if features.ndim != 3 or features.shape[2] != dim or features.shape[1] > length:
            raise InputError(f"features {tuple(features.shape)} must be (N, L <= {length}, {dim})")
        if mask.shape != features.shape[:2]:
            raise InputError(
                f"mask {tuple(mask.shape)} must be {tuple(features.shape[:2])}, one per position"
            )
        if self.score_inputs_:
            if text_scores is None:
                raise InputError(
                    f"this classifier also reads text scores ({', '.join(self.score_inputs_)}); pass "
                    "text_scores (score_inputs.text_scores of the texts' token stats) or score a feature "
                    "store (LTMIA.score)"
                )
            scores = torch.as_tensor(text_scores)
            if scores.shape != (features.shape[0], len(self.score_inputs_)):
                raise InputError(
                    f"text_scores {tuple(scores.shape)} must be ({features.shape[0]}, "
                    f"{len(self.score_inputs_)}), one per text and score input"
                )
            features = widen(features, scores)
        elif text_scores is not None:
            raise InputError("this classifier reads no text scores; leave text_scores out")
        return predict_logits(model, features, mask, self._dropped, self.micro_batch_size).numpy()

    def predict_proba(self, features: np.ndarray | Tensor, mask: np.ndarray | Tensor) -> np.ndarray:
        """(N, L, D), (N, L) -> (N,) P(member), the sigmoid of `decision_function`."""
        return torch.sigmoid(torch.from_numpy(self.decision_function(features, mask))).numpy()

    def score(self, source: SourceLike, split: str | None = "test") -> np.ndarray:
        """(n,) float32 membership logits of the rows of ``split`` (None: all) in row order, read shard by
        shard; a store of another feature layout is refused."""
        model = self._model()
        source = as_source(source)
        check_store_compatible(self.record_, source)
        if self.score_inputs_:
            source = ScoredSource(source, self.score_inputs_)
        return score_source(model, source, split, self._dropped, self.micro_batch_size)[0]

    def save(self, out: Path | str, overwrite: bool = False) -> Path:
        """Write the checkpoint directory ``out`` (``checkpoint.save_classifier``; ``overwrite`` replaces a
        classifier there); returns it."""
        self._model()
        metrics = {"best_epoch": self.best_epoch_, "best_val_auc": self.best_val_auc_}
        path = save_classifier(
            self.model_,
            self.config_,
            Path(out),
            groups=self.groups_,
            k=self.record_["k"],
            training=self.training_,
            metrics=metrics,
            overwrite=overwrite,
            score_inputs=self.score_inputs_,
        )
        self.record_["path"] = str(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> LTMIA:
        """An `LTMIA` from a checkpoint directory, with the parameters it was trained with."""
        model, record = load_classifier(Path(path))
        config, training = ClassifierConfig(**record["config"]), record["training"]
        sizes = {key: value for key, value in config.record().items() if key in MODEL_PARAMS}
        names = tuple(record.get("score_inputs", ()))  # checkpoints without score inputs record none
        estimator = cls(groups=record["groups"], score_inputs=names, **sizes, **training["settings"])
        layout = {key: record[key] for key in LAYOUT_KEYS}
        estimator._set_fitted(model, config, layout, record["groups"], record["path"], names)
        estimator.history_, estimator.best_epoch_ = training["history"], record["metrics"]["best_epoch"]
        estimator.best_val_auc_, estimator.training_ = record["metrics"]["best_val_auc"], training
        return estimator
