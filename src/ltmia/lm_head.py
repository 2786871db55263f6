"""A deferred LM head: the forward pass stops at the final hidden states, the logits come a block at a time.

Extraction reads the float32 logits of valid positions only, a cache-sized chunk at a time (SPEC §4,
``ltmia.tokenstats.logit_chunks``). Materialising a model's (b, L, V) float32 logits first costs 2 GiB per
16 texts at Gemma-3's V = 262k, written out and read back from memory, and runs the head on padding too.
With the head deferred the forward returns the (b, L, H) final hidden states and
``tokenstats.DeferredLogits`` computes z = h W^T + b in float32 for blocks of valid positions only, the very
product ``ltmia.device.float32_head`` computes for all of them.

That is exact in meaning only where the model's forward applies nothing to the head's output, so the head
is deferred only when all of these hold (`deferral_blocker` names the first that fails; the model then runs
its float32 head as before):

- its causal-LM class is one of `DEFERRABLE`, whose forward in ``transformers`` was read to be
  ``logits = head(hidden)`` and at most ``.float()`` / ``.contiguous()`` after it. Not RecurrentGemma, which
  soft-caps the logits always (``tanh(z / c) c``); not remote code, whose forward nobody has read;
- the config asks for no post-head transformation (`POST_HEAD_FIELDS`): Gemma-2's and Gemma-3's optional
  ``final_logit_softcapping``, and scalings such as Cohere's ``logit_scale`` or Granite's ``logits_scaling``
  in case a listed class ever reads them;
- the head is a plain ``nn.Linear`` without hooks: a PEFT adapter on it (LoRA target ``lm_head`` or
  ``modules_to_save``) wraps it in a module of its own, and accelerate's offloading hooks move its inputs.
  LoRA adapters elsewhere (``ltmia.finetune.lora_targets``: attention and MLP projections) leave the head
  alone, so a LoRA target with adapters disabled (``signals.reference_of``) shares the same head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from torch import Tensor, nn

from ltmia.device import Precision, autocast, float32_head, replaced_forward
from ltmia.tokenstats import DeferredLogits, Logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFERRABLE = frozenset(
    {
        # the zoo's families (ltmia.zoo.architectures) but RecurrentGemma, and the real ones ltmia fine-tunes
        "GPT2LMHeadModel",
        "GPTNeoXForCausalLM",
        "LlamaForCausalLM",
        "OPTForCausalLM",
        "PhiForCausalLM",
        "Qwen2ForCausalLM",
        "GPTNeoForCausalLM",
        "BloomForCausalLM",
        "MistralForCausalLM",
        "MambaForCausalLM",
        "RwkvForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
    }
)
"""``transformers`` causal-LM classes whose forward applies nothing after the LM head but what the config
asks for in `POST_HEAD_FIELDS` (read in transformers 5's ``modeling_*.py``)."""

POST_HEAD_FIELDS = ("final_logit_softcapping", "logits_soft_cap", "logit_scale", "logits_scaling")
"""Config fields that transform the logits after the head where set (not None)."""


def base_model(model: nn.Module) -> nn.Module:
    """The ``transformers`` model inside a PEFT wrapper, or ``model`` itself."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def deferral_blocker(model: nn.Module) -> str | None:
    """Why ``model``'s LM head cannot be deferred without changing its logits; None when it can."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return "a prompt-learning adapter changes the sequence the head sees"
    base = cast("PreTrainedModel", base_model(model))
    kind = type(base)
    if kind.__name__ not in DEFERRABLE or not kind.__module__.startswith("transformers.models."):
        return f"{kind.__module__}.{kind.__name__} is not a causal-LM class known to end at its head"
    text_config = base.config.get_text_config()
    for field in POST_HEAD_FIELDS:
        if getattr(text_config, field, None) is not None:
            return f"the config sets {field}, applied to the logits after the head"
    head = base.get_output_embeddings()
    if type(head) is not nn.Linear:
        return f"the LM head is a {type(head).__name__}, not a plain nn.Linear"
    if head._forward_hooks or head._forward_pre_hooks:
        return "the LM head has forward hooks"
    return None


def deferred_hidden_size(model: nn.Module) -> int | None:
    """H, the width of the final hidden states a deferred head leaves; None when the head is not deferred."""
    if deferral_blocker(model) is not None:
        return None
    return cast("PreTrainedModel", base_model(model)).get_output_embeddings().weight.shape[1]


@contextmanager
def deferred_head(model: nn.Module) -> Iterator[nn.Linear]:
    """Yields the LM head; inside, ``model(...).logits`` are the (b, L, H) final hidden states.

    The head's forward returns its input, as ``ltmia.device.float32_head`` patches it; only exact for
    models that `deferral_blocker` lets through.
    """
    head = cast("PreTrainedModel", base_model(model)).get_output_embeddings()
    with replaced_forward(head, lambda hidden: hidden):
        yield cast(nn.Linear, head)


def forward_logits(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, precision: Precision, block_positions: int
) -> Logits:
    """One forward pass on (b, L) ids -> the model's logits for ``tokenstats.logit_chunks``.

    `DeferredLogits` (blocks of ``block_positions``) where `deferral_blocker` allows, else the (b, L, V)
    float32 logits of a float32 head. The body runs at ``precision`` either way.
    """
    if deferral_blocker(model) is None:
        with autocast(precision, input_ids.device), deferred_head(model) as head:
            hidden = model(input_ids=input_ids, attention_mask=attention_mask).logits
        bias = None if head.bias is None else head.bias.float()
        return DeferredLogits(hidden, head.weight.float(), bias, block_positions)
    with autocast(precision, input_ids.device), float32_head(model):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
