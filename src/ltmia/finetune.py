"""SPEC §3: fine-tune a causal LM on member texts, making a target whose members are known.

The training loop here is the only one in ltmia: pretraining the zoo is the same loop with another
``Recipe``. Cross-entropy on members with pads masked (EOS trained on); paper defaults are 3 epochs,
batch 16, AdamW lr 5e-5 with torch defaults, constant LR, no clipping, fp32, best-validation epoch
restored. Optimizer, schedule and full-vs-LoRA are parameters because the recipe-confound study varies them;
``precision = "bf16"`` runs the forward passes under bf16 autocast (``ltmia.device``), several times faster
on CPUs with bf16 matrix units, with float32 weights, optimiser state and loss. A target trains in its
scratch directory, where the state after each epoch is kept (``ltmia.train_state``): a killed fine-tune
run again with the same inputs continues at its last whole epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ltmia.artefacts import building, check_scratch, read_manifest, versions, write_json, write_manifest
from ltmia.data import SEQ_LEN, Splits, encode, lm_labels, resolve_bos
from ltmia.device import autocast, resolve_device, resolve_precision
from ltmia.errors import DivergedError, OutputExistsError
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.schedules import warmup_cosine
from ltmia.settings import Recipe
from ltmia.settings.base import Precision
from ltmia.sources import default_bos, model_spec, source_record
from ltmia.train_state import EpochState, clear_state, load_state, save_state

log = logging.getLogger(__name__)

TARGET_ARTEFACT = "ltmia-target"
INPUTS_FILE = "inputs.json"  # in a target's scratch directory while it trains: what it is being trained on
PROVENANCE = ("source",)  # recorded inputs that name where something came from, not what it is


@dataclass
class TrainLog:
    """Per-epoch losses and the epoch whose weights were kept."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None


def token_loss(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, precision: str = "fp32"
) -> tuple:
    """Summed next-token cross-entropy and token count: ``(B, L), (B, L) -> (scalar, int)``.

    Computed from the logits ourselves (not the model's ``labels=`` path) so every family, including the
    non-transformers, is trained and measured with the identical loss, always in float32.
    """
    with autocast(cast(Precision, precision), input_ids.device):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    labels = lm_labels(input_ids, attention_mask)[:, 1:]
    losses = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return losses, int((labels != -100).sum())


def batches(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches in a seeded random order (or in order when ``generator`` is None)."""
    n = len(input_ids)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield input_ids[index], attention_mask[index]


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int = 32,
    precision: str = "fp32",
) -> float:
    """Token-weighted mean cross-entropy of ``model`` on encoded texts."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for ids, mask in batches(input_ids, attention_mask, batch_size, None):
        loss, n = token_loss(model, ids.to(device), mask.to(device), precision)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def make_optimizer(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    extra: dict[str, Any] = {} if recipe.weight_decay is None else {"weight_decay": recipe.weight_decay}
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, **extra)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, **extra)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    """Linear warmup, then constant / cosine-to-zero (``ltmia.schedules.warmup_cosine``) / linear-to-zero over
    the remaining steps."""
    warmup_steps = recipe.warmup_steps

    def factor(step: int) -> float:
        if recipe.schedule == "cosine":
            return warmup_cosine(step, warmup_steps, total_steps - warmup_steps)
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if recipe.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def diverged(where: str, recipe: Recipe) -> DivergedError:
    """The one-line error for a NaN/inf loss: a target trained past it is garbage, so nothing is written."""
    return DivergedError(
        f"fine-tuning diverged ({where}); lower the learning rate (now {recipe.lr:g}) or set a gradient "
        "clip (grad_clip / --grad-clip)"
    )


def train_causal_lm(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    recipe: Recipe,
    on_step: Callable[[int, float], None] | None = None,
    checkpoints: Path | None = None,
) -> TrainLog:
    """Train ``model`` on encoded ``train`` texts; after each epoch measure ``val`` and keep the best epoch.

    ``train``/``val`` are ``(input_ids (N, L), attention_mask (N, L))``. Only parameters that require grad
    are optimised (all of them for full fine-tuning, the adapters for LoRA), and only those are snapshotted
    for the best-epoch restore, so LoRA on a large model costs no second copy of the base.

    ``checkpoints``: a directory where the state after each epoch but the last is saved, and from whose
    latest epoch a killed run continues (``ltmia.train_state``; the caller makes sure it is this run's).
    """
    device = next(model.parameters()).device
    precision = resolve_precision(recipe.precision, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, recipe)
    steps_per_epoch = math.ceil(len(train[0]) / recipe.batch_size)
    schedule = make_schedule(optimizer, recipe, recipe.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(recipe.seed)
    history, best_loss, best_state, first = TrainLog(), math.inf, None, 1
    resumed = load_state(checkpoints, params, optimizer, schedule, generator) if checkpoints else None
    if resumed is not None:
        history, best_loss, best_state = TrainLog(**resumed.log), resumed.best, resumed.best_state
        first = resumed.epoch + 1
    for epoch in range(first, recipe.epochs + 1):
        model.train()
        started, total, count = time.perf_counter(), 0.0, 0
        for ids, mask in batches(*train, recipe.batch_size, generator):
            loss_sum, n = token_loss(model, ids.to(device), mask.to(device), precision)
            optimizer.zero_grad(set_to_none=True)
            (loss_sum / max(n, 1)).backward()
            if recipe.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            schedule.step()
            step_loss = loss_sum.item() / max(n, 1)
            if not math.isfinite(step_loss):
                raise diverged(f"training loss {step_loss} in epoch {epoch}", recipe)
            total, count = total + loss_sum.item(), count + n
            if on_step is not None:
                on_step(epoch, step_loss)
        entry = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            "seconds": time.perf_counter() - started,
        }
        if val is not None:
            entry["val_loss"] = mean_loss(model, *val, precision=precision)
            if not math.isfinite(entry["val_loss"]):
                raise diverged(f"validation loss {entry['val_loss']} after epoch {epoch}", recipe)
            if entry["val_loss"] < best_loss:
                best_loss, history.best_epoch = entry["val_loss"], epoch
                best_state = [p.detach().clone() for p in params]
        history.epochs.append(entry)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
        if checkpoints is not None and epoch < recipe.epochs:
            state = EpochState(epoch, asdict(history), best_loss, best_state)
            save_state(checkpoints, state, params, optimizer, schedule, generator)
    if recipe.restore_best and best_state is not None:
        with torch.no_grad():
            for param, saved in zip(params, best_state, strict=True):
                param.copy_(saved)
    else:
        history.best_epoch = recipe.epochs
    model.eval()
    return history


KNOWN_LORA_TARGETS = {
    # attention + MLP projections (SPEC §3) of real families ltmia fine-tunes offline
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma3_text": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma3": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def lora_targets(model: PreTrainedModel, recipe: Recipe | None = None) -> list[str]:
    """Attention + MLP projection names for LoRA: the recipe's own list when it gives one, else the zoo's
    list or ``KNOWN_LORA_TARGETS`` for known families, else every linear layer's name except the LM head
    (what peft would need to be told for an unknown architecture)."""
    from ltmia.zoo.architectures import ARCHITECTURES

    if recipe is not None and recipe.lora_targets:
        return list(recipe.lora_targets)
    model_type = getattr(model.config, "model_type", None)
    if model_type in ARCHITECTURES:
        return list(ARCHITECTURES.get(str(model_type)).lora_targets)
    if model_type in KNOWN_LORA_TARGETS:
        return list(KNOWN_LORA_TARGETS[model_type])
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
    }
    return sorted(names - {"lm_head", "score"})


def apply_lora(model: PreTrainedModel, recipe: Recipe) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (SPEC §3: r 16, alpha 32, dropout 0.05, attention + MLP)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=lora_targets(model, recipe),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def finetune(
    base: str,
    splits: Splits,
    out: Path,
    recipe: Recipe | None = None,
    *,
    seq_len: int = SEQ_LEN,
    bos: str | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Fine-tune ``base`` (zoo/local directory, hub id, .gguf file or ``packaged:<name>``) on
    ``splits.members``; write a target directory.

    The directory holds the model (full weights, or only the LoRA adapter pointing at its base), the
    tokenizer, ``splits.json`` (text hashes proving membership), ``train_log.json`` and a manifest that
    records the base as given (with its GGUF hash), the recipe with its resolved precision, the BOS
    setting (``ltmia.data.resolve_bos``; None: what a packaged model needs, else SPEC §2's "never") and
    each file's size and SHA-256. A finished target of the same inputs is returned as is; one of other
    inputs is refused, naming them (``overwrite``: replaced), and a directory that is not a target too.
    """
    out = Path(out)
    torch_device = resolve_device(device)
    recipe = (recipe or Recipe()).model_copy()
    recipe.precision = resolve_precision(recipe.precision, torch_device)
    base_spec = model_spec(base)
    tokenizer = load_tokenizer(base_spec, trust_remote_code)
    bos_used = resolve_bos(tokenizer, bos or default_bos(base_spec) or "never")
    record = splits.record()
    inputs = {
        "base": base_spec,
        "base_source": source_record(base_spec),
        "source": splits.source,
        "kind": splits.kind,
        "split_fingerprint": record["fingerprint"],
        "recipe": recipe.record(),
        "seq_len": seq_len,
        "bos": bos_used,
    }
    if finished_target(out, inputs, overwrite):
        log.info("%s is a finished target of the same inputs; reusing it", out)
        return out
    replace_target = overwrite and read_manifest(out) is not None  # a target: finished_target refused others
    resume = partial(same_inputs, inputs=inputs)  # a dead run of the same inputs: continue its epochs
    with building(out, what="target", replace=replace_target, resume=resume) as scratch:
        write_json(scratch / INPUTS_FILE, inputs)
        torch.manual_seed(recipe.seed)
        model = load_causal_lm(base_spec, trust_remote_code=trust_remote_code, tokenizer=tokenizer)
        lora_or_full = apply_lora(model, recipe) if recipe.lora else model
        model = cast(PreTrainedModel, lora_or_full.to(torch_device))  # a PeftModel answers as its base does
        train = encode(tokenizer, splits.members, splits.kind, seq_len, bos_used)
        val = encode(tokenizer, splits.val, splits.kind, seq_len, bos_used)
        started = time.perf_counter()
        history = train_causal_lm(model, train, val, recipe, on_step, checkpoints=scratch)
        (scratch / INPUTS_FILE).unlink()
        clear_state(scratch)
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        write_json(scratch / "splits.json", record)
        write_json(scratch / "train_log.json", asdict(history))
        manifest = {
            "artefact": TARGET_ARTEFACT,
            **inputs,
            "model_type": model.config.model_type,
            "best_epoch": history.best_epoch,
            "seconds": time.perf_counter() - started,
            "versions": versions(),
        }
        write_manifest(scratch, manifest)
    return out


def same_inputs(scratch: Path, inputs: dict) -> bool:
    """Whether a dead run's scratch directory was fine-tuning ``inputs`` (then its saved epochs are kept)."""
    try:
        return json.loads((scratch / INPUTS_FILE).read_text()) == json.loads(json.dumps(inputs))
    except (OSError, ValueError):
        return False


def finished_target(out: Path, inputs: dict, overwrite: bool = False) -> bool:
    """Whether ``out`` is a finished target of exactly ``inputs`` (then it is reused).

    A target of other inputs is refused with the settings that differ (``overwrite``: it is fine-tuned
    again and replaced); any other directory is refused by ``building``, or here when it is another ltmia
    artefact. Inputs an older ltmia did not record are not compared, nor where the texts came from (their
    split fingerprint is what matters; a corpus path given another way is the same corpus). All of it is
    checked before any training, and so is another process writing ``out`` (``check_scratch``).
    """
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None and out.exists():  # refused now rather than after the training
        raise OutputExistsError(
            f"{out} exists and is not a finished ltmia target; choose another output directory "
            "(ltmia does not overwrite what it did not write)"
        )
    check_scratch(out)
    if manifest is None:
        return False
    if manifest.get("artefact") != TARGET_ARTEFACT:
        what = manifest.get("artefact", "artefact").removeprefix("ltmia-")
        raise OutputExistsError(f"{out} holds an ltmia {what}, not a target; choose another output directory")
    if overwrite:
        return False
    compared = {key: value for key, value in inputs.items() if key in manifest and key not in PROVENANCE}
    changed = [name for key, value in compared.items() for name in differ(key, manifest[key], value)]
    if changed:
        raise OutputExistsError(
            f"{out} is a target of other inputs ({', '.join(changed)} differ); choose another output "
            "directory, or pass --overwrite to replace it"
        )
    return True


def differ(name: str, recorded: object, wanted: object) -> list[str]:
    """Names of what differs between a recorded and a wanted setting (``recipe.lr`` for a dict's key; keys
    an older ltmia did not record are not compared)."""
    recorded, wanted = json.loads(json.dumps(recorded)), json.loads(json.dumps(wanted))
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        return [f"{name}.{key}" for key in sorted(recorded) if recorded[key] != wanted.get(key)]
    return [] if recorded == wanted else [name]
