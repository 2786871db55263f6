"""Load any causal LM and its tokenizer: an ltmia zoo directory, any local ``save_pretrained`` directory,
a PEFT/LoRA adapter directory, a Hugging Face hub id (for users with network), a GGUF file or a packaged
model (``packaged:<name>``; both through ``ltmia.sources``, which converts them once to a directory).

This is the boundary where user-named models enter ltmia, so it validates: a directory that is not a model,
remote code that was not explicitly trusted, and a tokenizer without EOS all get one-line errors or fixes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ltmia.errors import InputError
from ltmia.sources import resolve_model

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


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


def adapter_base(spec: str) -> str | None:
    """The base model a PEFT adapter directory was trained on, or None when ``spec`` is not an adapter.

    A target written by ``ltmia finetune`` names its base as the user gave it (``packaged:...``, a .gguf
    path), which survives a cleared conversion cache; peft's own config holds the converted directory.
    """
    config = Path(spec) / ADAPTER_CONFIG
    if not config.exists():
        return None
    manifest = Path(spec) / "manifest.json"
    if manifest.exists():
        recorded = json.loads(manifest.read_text())
        if recorded.get("artefact") == "ltmia-target" and recorded.get("base"):
            return recorded["base"]
    return json.loads(config.read_text())["base_model_name_or_path"]


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
    ``load_causal_lm`` matches by resizing the embeddings.
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
            tokenizer.add_special_tokens({"eos_token": "</s>"})
        log.warning("tokenizer of %s has no EOS token; using %r as EOS", source, tokenizer.eos_token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    spec: str,
    *,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    vocab_size: int | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A causal LM in eval mode from a directory, adapter directory or hub id.

    For a PEFT adapter the base is loaded once and wrapped; its reference is the same object with adapters
    disabled (``with model.disable_adapter():``), never a second copy. ``vocab_size`` resizes the embeddings
    when ``load_tokenizer`` had to add an EOS token. ``attn_implementation`` is not stored in ``config.json``;
    pass ``"eager"`` to reproduce a zoo model's logits bit for bit (transformers otherwise picks SDPA).
    """
    spec = resolve_model(spec)
    _check_local(spec)
    base = adapter_base(spec)
    base = None if base is None else resolve_model(base)
    _refuse_remote_code(base or spec, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base or spec,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
        )
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load a causal LM from {_describe_source(base or spec)}: {error}") from None
    if vocab_size is not None and vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec)
    from ltmia.zoo.architectures import enable_fast_paths

    enable_fast_paths(model)
    return model.eval()


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
