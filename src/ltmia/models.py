"""Load any causal LM and its tokenizer: an ltmia zoo directory, any local ``save_pretrained`` directory,
a PEFT/LoRA adapter directory, a Hugging Face hub id (for users with network), a GGUF file or a packaged
model (``packaged:<name>``; both through ``ltmia.sources``, which converts them once to a directory).

This is the boundary where user-named models enter ltmia, so it validates: a directory that is not a model,
remote code that was not explicitly trusted, weights that are damaged or pickled code, a model smaller than
its tokenizer and a tokenizer without EOS all get one-line errors or fixes. A directory ltmia wrote (a
target, a zoo model, a converted GGUF) is checked against the sizes and SHA-256s its manifest records
(``ltmia.artefacts.verify_artefact``) before transformers reads a byte of it.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ltmia.artefacts import read_json, read_manifest, verify_artefact
from ltmia.device import resolve_device
from ltmia.errors import DamagedError, InputError
from ltmia.sources import resolve_model

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADDED_EOS = "</s>"  # the EOS ``load_tokenizer`` adds to a tokenizer that has none
LOAD_ERRORS = (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError)
"""What transformers, torch and safetensors raise for a missing, damaged or refused weights file."""
FAST_PATHS_ENV = "LTMIA_FAST_PATHS"
"""``1``/``on``: the zoo's CPU fast paths in every model; ``0``/``off``: in none; unset/``auto``: zoo only."""
MAX_BASE_CHAIN = 8  # a target's base may be a target too; a longer chain is not followed
REWRITE = {
    "ltmia-target": "fine-tune it again (ltmia finetune --overwrite)",
    "ltmia-zoo-model": "build the zoo again into a new directory (ltmia zoo build --out)",
    "ltmia-tokenizer": "build the zoo again into a new directory (ltmia zoo build --out)",
    "ltmia-gguf-model": "delete the directory; ltmia converts the GGUF again on the next use",
}


def _describe_source(spec: str) -> str:
    return f"local directory {spec}" if Path(spec).exists() else f"hub id {spec!r}"


def _check_local(spec: str) -> None:
    path = Path(spec)
    if not path.exists():
        return  # a hub id; transformers resolves (or fails) below
    if not path.is_dir():
        raise InputError(f"{spec} is a file, not a model directory; pass the directory save_pretrained wrote")
    if not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists():
        raise InputError(
            f"{spec} is not a model directory (no config.json or {ADAPTER_CONFIG}); "
            "pass a directory written by save_pretrained or a hub id"
        )
    manifest = read_manifest(path)
    if manifest is not None and str(manifest.get("artefact", "")).startswith("ltmia-"):
        fix = REWRITE.get(manifest["artefact"], "write it again")
        verify_artefact(path, manifest, f"the model is damaged: {fix}")


def adapter_base(spec: str) -> str | None:
    """The base model a PEFT adapter directory was trained on, or None when ``spec`` is not an adapter.

    A target written by ``ltmia finetune`` names its base as the user gave it (``packaged:...``, a .gguf
    path), which survives a cleared conversion cache; peft's own config holds the converted directory.
    """
    config = Path(spec) / ADAPTER_CONFIG
    if not config.exists():
        return None
    recorded = read_manifest(Path(spec)) or {}
    if recorded.get("artefact") == "ltmia-target" and recorded.get("base"):
        return recorded["base"]
    base = read_json(config, "copy the adapter directory again")
    if not isinstance(base, dict) or not isinstance(base.get("base_model_name_or_path"), str):
        raise InputError(f"{config} names no base model (base_model_name_or_path); pass --reference")
    return base["base_model_name_or_path"]


def _refuse_remote_code(spec: str, trust_remote_code: bool) -> None:
    """transformers would run code from the model repository; ltmia refuses unless the user opted in."""
    if trust_remote_code:
        return
    try:
        config = AutoConfig.from_pretrained(spec, trust_remote_code=False)
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise InputError(
                f"{spec} needs custom code from its repository; review it, then pass --trust-remote-code"
            ) from None
        raise InputError(f"cannot read the config of {_describe_source(spec)}: {error}") from None
    except OSError as error:
        raise InputError(f"cannot load {_describe_source(spec)}: {str(error).splitlines()[0]}") from None
    if getattr(config, "auto_map", None):
        raise InputError(f"{spec} declares custom code (auto_map); review it, then pass --trust-remote-code")


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    """The tokenizer of a model directory / hub id, with EOS and pad configured as SPEC §2 needs.

    A tokenizer without EOS gets one (its SEP or BOS token when it has one, else a new ``</s>``), with a
    log line; a missing pad becomes EOS (SPEC §2). Adding a token grows the vocabulary, which
    ``load_causal_lm`` matches by resizing the embeddings (that one token only).
    """
    base = adapter_base(spec)
    source = base if base and not (Path(spec) / "tokenizer_config.json").exists() else spec
    source = resolve_model(source)
    _check_local(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load a tokenizer from {_describe_source(source)}: {error}") from None
    if tokenizer.eos_token is None:
        fallback = tokenizer.sep_token or tokenizer.bos_token
        if fallback is not None:
            tokenizer.eos_token = fallback
        else:
            tokenizer.add_special_tokens({"eos_token": ADDED_EOS})
        log.warning("tokenizer of %s has no EOS token; using %r as EOS", source, tokenizer.eos_token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    spec: str,
    *,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    tokenizer=None,
    attn_implementation: str | None = None,
    fast_paths: bool | None = None,
) -> PreTrainedModel:
    """A causal LM in eval mode from a directory, adapter directory or hub id.

    For a PEFT adapter the base is loaded once and wrapped; its reference is the same object with adapters
    disabled (``with model.disable_adapter():``), never a second copy. ``tokenizer`` (the one whose ids the
    model will read) must fit the model's embeddings (``check_covers``). ``attn_implementation`` is not
    stored in ``config.json``; pass ``"eager"`` to reproduce a zoo model's logits bit for bit (transformers
    otherwise picks SDPA). ``fast_paths`` swaps in the zoo's CPU fast paths (``wants_fast_paths``; None:
    zoo models only, unless ``LTMIA_FAST_PATHS`` says otherwise).
    """
    spec = resolve_model(spec)
    _check_local(spec)
    fast = wants_fast_paths(spec, fast_paths)
    base = adapter_base(spec)
    base = None if base is None else resolve_model(base)
    _refuse_remote_code(base or spec, trust_remote_code)
    model: PreTrainedModel
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base or spec,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
        )
    except LOAD_ERRORS as error:
        raise weights_error(base or spec, error) from None
    if tokenizer is not None:
        check_covers(model, tokenizer, base or spec)
    if base is not None:
        from peft import PeftModel

        model = cast(PreTrainedModel, PeftModel.from_pretrained(model, spec))  # answers as its base does
    if fast:
        from ltmia.zoo.architectures import enable_fast_paths

        enable_fast_paths(model)
    return model.eval()


def wants_fast_paths(spec: str, fast_paths: bool | None = None) -> bool:
    """Whether ``load_causal_lm`` swaps the zoo's CPU fast paths (``ltmia.zoo.architectures.
    enable_fast_paths``: Mamba, RWKV and RG-LRU scans) into the model ``spec`` names.

    They compute what the stock ``transformers`` code computes (Mamba's to float rounding; tested on the
    zoo's configs and on published-size layer shapes), but they are ltmia's code in place of the library's,
    so by default only models of ltmia's own zoo get them: a zoo model, or a target fine-tuned from one
    (``is_zoo_model``), which is what keeps a study's numbers as they were. Anyone else's model runs the
    stock code unless asked: ``fast_paths=True``, or ``LTMIA_FAST_PATHS=1`` in the environment (``0``
    turns them off for zoo models too; an explicit ``fast_paths`` wins over both).
    """
    if fast_paths is not None:
        return fast_paths
    setting = os.environ.get(FAST_PATHS_ENV, "").strip().lower()
    if setting in ("1", "on", "true", "yes"):
        return True
    if setting in ("0", "off", "false", "no"):
        return False
    if setting not in ("", "auto"):
        raise InputError(f"{FAST_PATHS_ENV}={setting!r}: give 1 (every model), 0 (none) or auto (zoo only)")
    return is_zoo_model(spec)


def is_zoo_model(spec: str) -> bool:
    """Whether ``spec`` is a directory ltmia's zoo wrote (manifest ``ltmia-zoo-model``) or a target whose
    base chain leads to one (a target's manifest names its base as it was given; a base that has been
    moved or deleted since counts as not a zoo model)."""
    for _ in range(MAX_BASE_CHAIN):
        path = Path(spec)
        manifest = read_manifest(path) if path.is_dir() else None
        if manifest is None:
            return False
        if manifest.get("artefact") == "ltmia-zoo-model":
            return True
        if manifest.get("artefact") != "ltmia-target" or not isinstance(manifest.get("base"), str):
            return False
        spec = manifest["base"]
    return False


def weights_error(spec: str, error: Exception) -> InputError:
    """A one-line error for weights transformers could not load: pickled code (refused, never run),
    damaged files, or anything else it reports."""
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    source = _describe_source(spec)
    if "weights_only" in str(error) or type(error).__name__ == "UnpicklingError":
        return InputError(
            f"{source} holds pickled weights (pytorch_model.bin) that are not plain tensors; ltmia loads "
            "pickles only as weights and never runs their code: convert the model to safetensors from a "
            "source you trust"
        )
    if isinstance(error, (OSError, ValueError)) and "safetensors" not in reason.lower():
        return InputError(f"cannot load a causal LM from {source}: {reason}")
    return DamagedError(
        f"cannot load the weights of {source} ({type(error).__name__}: {reason}); the files are damaged "
        "or incomplete: copy or download the model again"
    )


def check_covers(model: PreTrainedModel, tokenizer, spec: str) -> None:
    """The model must have an embedding for every token id of ``tokenizer``; never resized to fit, except
    by the one EOS ``load_tokenizer`` adds to a tokenizer that has none (fine-tuning resized the target
    alike, so target and reference still agree)."""
    rows, size = cast(nn.Embedding, model.get_input_embeddings()).num_embeddings, len(tokenizer)
    if size <= rows:
        return
    if size == rows + 1 and tokenizer.eos_token == ADDED_EOS and tokenizer.eos_token_id == rows:
        log.info("%s: one embedding row added for the EOS token %r", spec, ADDED_EOS)
        model.resize_token_embeddings(size)
        return
    raise InputError(
        f"{spec} has {rows:,} token embeddings but the tokenizer has {size:,} tokens; models are never "
        "resized to fit: the reference must be the target's base model, with the same vocabulary"
    )


def check_same_tokenizer(target_tokenizer, reference: str, trust_remote_code: bool) -> None:
    """Target and reference must tokenise alike, or their per-token signals compare different tokens."""
    try:
        reference_tokenizer = load_tokenizer(reference, trust_remote_code)
    except InputError:
        log.warning("%s has no tokenizer of its own; assuming it shares the target's", reference)
        return
    if reference_tokenizer.get_vocab() != target_tokenizer.get_vocab():
        raise InputError(
            f"target and reference tokenizers differ ({len(target_tokenizer)} vs {len(reference_tokenizer)} "
            f"tokens, or the same tokens with other ids); the reference must be the target's base model"
        )


def load_models(
    target: str | Path, reference: str | None, device: str, trust_remote_code: bool
) -> tuple[nn.Module, nn.Module | None, Any]:
    """Target, reference (None: the LoRA target with adapters disabled) and tokenizer, on ``device``.

    Both are checked against the target's tokenizer the same way in every command: the reference must
    tokenise alike (``check_same_tokenizer``) and each model must cover the tokenizer (``load_causal_lm``).
    """
    tokenizer = load_tokenizer(str(target), trust_remote_code)
    if reference is not None:
        check_same_tokenizer(tokenizer, reference, trust_remote_code)
    options: dict[str, Any] = dict(trust_remote_code=trust_remote_code, tokenizer=tokenizer)
    torch_device = resolve_device(device)
    target_model = cast(nn.Module, load_causal_lm(str(target), **options)).to(torch_device)
    reference_model = (
        None if reference is None else cast(nn.Module, load_causal_lm(reference, **options)).to(torch_device)
    )
    return target_model, reference_model, tokenizer
