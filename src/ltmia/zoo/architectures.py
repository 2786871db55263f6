"""The model zoo's tiny causal-LM architectures, one registry entry per ``transformers`` family.

ltmia pretrains these itself (no hub downloads) and fine-tunes them into membership-inference targets, so
every family must be small enough to train on a CPU yet keep the structure that makes it that family: its
attention/positional scheme, MLP type, normalisation and, for the non-transformers, its recurrence. All
families share the knobs in ``ZooSize``; each ``make_config`` maps them onto its own config fields so that at
the default size (vocab 4,096) every model has 1-5 M parameters.

Choices shared by all families, and why:

* input and output embeddings are tied: with a 4,096 vocabulary an untied head alone would be ~0.5 M
  parameters, a large share of a tiny model;
* dropout is 0: fine-tuned targets should differ by architecture only, and a train step is then a
  deterministic function of the seed and the batch (LoRA brings its own dropout);
* ``use_cache`` is False: the zoo trains and scores whole sequences, and for the recurrent families a cache
  would route the forward through the slow step-by-step path (generation can still pass ``use_cache=True``);
* attention is "eager": it is the one implementation every family here supports (GPT-Neo and BLOOM have no
  SDPA path) and it is deterministic on CPU. ``config.json`` does not keep it: reload with
  ``ltmia.models.load_causal_lm(path, attn_implementation="eager")`` for bit-identical logits.

``build_model`` installs ``enable_fast_paths``, and ``ltmia.models.load_causal_lm`` does for zoo models (and
targets fine-tuned from them; other models opt in, ``ltmia.models.wants_fast_paths``): CPU replacements for
the recurrent families' Python time loops that keep each model's class, weights and outputs (Mamba's stock
loop is ~50x slower than the replacement when training).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    GPT2Config,
    GPTNeoConfig,
    GPTNeoXConfig,
    LlamaConfig,
    MambaConfig,
    MistralConfig,
    OPTConfig,
    PhiConfig,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    RecurrentGemmaConfig,
    RwkvConfig,
)
from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRglru
from transformers.models.rwkv import modeling_rwkv
from transformers.models.rwkv.modeling_rwkv import RwkvSelfAttention

from ltmia.registry import Registry
from ltmia.settings.zoo import ZooSize
from ltmia.zoo.fast_mamba import FastMambaMixer, M, enable_fast_mamba

ATTN_IMPLEMENTATION = "eager"
Family = Literal["transformer", "state-space", "linear-attention", "gated-recurrence"]


@dataclass(frozen=True)
class Architecture:
    """A registered family: how to configure it and where LoRA adapters go."""

    name: str
    family: Family
    make_config: Callable[[int, int, int, ZooSize], PretrainedConfig]  # (vocab_size, eos_id, pad_id, size)
    lora_targets: list[str]  # module-name suffixes of the attention + MLP projections


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
MakeConfig = Callable[[int, int, int, ZooSize], PretrainedConfig]

_LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _register(name: str, family: Family, lora_targets: list[str]) -> Callable[[MakeConfig], Architecture]:
    """Decorator turning a ``make_config`` function into a registered ``Architecture``."""

    def wrap(make_config: MakeConfig) -> Architecture:
        return ARCHITECTURES.register(name)(Architecture(name, family, make_config, lora_targets))

    return wrap


def _tokens(vocab_size: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    """Fields every config gets: vocabulary, special ids (documents start after an EOS), tying, no cache."""
    return {
        "vocab_size": vocab_size,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "tie_word_embeddings": True,
        "use_cache": False,
    }


def _gated_ffn(hidden: int) -> int:
    """SwiGLU width with the parameters of a 4x plain MLP (8/3 x hidden), rounded up to a multiple of 32."""
    return 32 * math.ceil(8 * hidden / 3 / 32)


def _kv_heads(heads: int, divisor: int) -> int:
    """Grouped-query attention: ``heads / divisor`` key-value heads, at least one."""
    return max(1, heads // divisor)


@_register("gpt2", "transformer", ["c_attn", "c_proj", "c_fc"])
def _gpt2(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return GPT2Config(
        **_tokens(vocab_size, eos_id, pad_id),
        n_embd=size.hidden,
        n_layer=size.layers,
        n_head=size.heads,
        n_positions=size.max_len,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


@_register("gpt_neox", "transformer", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"])
def _gpt_neox(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return GPTNeoXConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=4 * size.hidden,
        max_position_embeddings=size.max_len,
    )


@_register("llama", "transformer", _LLAMA_TARGETS)
def _llama(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return LlamaConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        intermediate_size=_gated_ffn(size.hidden),
        max_position_embeddings=size.max_len,
    )


@_register("opt", "transformer", ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
def _opt(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return OPTConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        word_embed_proj_dim=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        ffn_dim=4 * size.hidden,
        max_position_embeddings=size.max_len,
        dropout=0.0,
        attention_dropout=0.0,
    )


@_register("phi", "transformer", ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"])
def _phi(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return PhiConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=4 * size.hidden,
        max_position_embeddings=size.max_len,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
    )


@_register("qwen2", "transformer", _LLAMA_TARGETS)
def _qwen2(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    return Qwen2Config(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=_kv_heads(size.heads, 4),
        intermediate_size=_gated_ffn(size.hidden),
        max_position_embeddings=size.max_len,
    )


@_register("gpt_neo", "transformer", ["q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj"])
def _gpt_neo(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """Alternating global / local attention as in GPT-Neo, with the local window at half the context."""
    attention_types: list[list[object]] = [[["global", "local"], size.layers // 2]]
    if size.layers % 2:
        attention_types.append([["global"], 1])
    return GPTNeoConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_layers=size.layers,
        num_heads=size.heads,
        intermediate_size=4 * size.hidden,
        max_position_embeddings=size.max_len,
        attention_types=attention_types,
        window_size=max(1, size.max_len // 2),
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
    )


@_register("bloom", "transformer", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"])
def _bloom(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """BLOOM uses ALiBi, so it has no position table and ``max_len`` does not enter its config."""
    return BloomConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        n_layer=size.layers,
        n_head=size.heads,
    )


@_register("mistral", "transformer", _LLAMA_TARGETS)
def _mistral(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """Held out from training. Grouped-query and sliding-window attention keep it distinct from llama."""
    return MistralConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=_kv_heads(size.heads, 2),
        intermediate_size=_gated_ffn(size.hidden),
        max_position_embeddings=size.max_len,
        sliding_window=max(1, size.max_len // 2),
    )


@_register("mamba", "state-space", ["in_proj", "x_proj"])
def _mamba(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """A Mamba block replaces both attention and MLP, so it gets twice the layers (as in the Mamba paper).

    LoRA goes on ``in_proj`` and ``x_proj`` only: peft refuses ``out_proj`` and ``conv1d`` for Mamba (the
    fused CUDA kernel reads their weights directly), and the mixer reads ``dt_proj.weight`` directly on
    every path, so an adapter there would never be used.
    """
    return MambaConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        num_hidden_layers=2 * size.layers,
    )


@_register("rwkv", "linear-attention", ["key", "value", "receptance", "output"])
def _rwkv(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """``rescale_every=0``: the weight halving it enables is an fp16 overflow guard, not needed in fp32, and
    it would make eval-mode weights differ from train-mode ones."""
    return RwkvConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        attention_hidden_size=size.hidden,
        intermediate_size=4 * size.hidden,
        num_hidden_layers=size.layers,
        context_length=size.max_len,
        rescale_every=0,
    )


@_register(
    "recurrent_gemma",
    "gated-recurrence",
    [*_LLAMA_TARGETS, "linear_x", "linear_y", "linear_out"],
)
def _recurrent_gemma(vocab_size: int, eos_id: int, pad_id: int, size: ZooSize) -> PretrainedConfig:
    """Griffin: two RG-LRU blocks per local-attention block. Its MLP halves ``intermediate_size`` into the
    gate and up projections, so 6 x hidden gives the 3 x hidden branches of the released models."""
    return RecurrentGemmaConfig(
        **_tokens(vocab_size, eos_id, pad_id),
        hidden_size=size.hidden,
        lru_width=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=1,
        intermediate_size=6 * size.hidden,
        attention_window_size=size.max_len,
    )


def build_model(
    arch: str, vocab_size: int, eos_id: int, pad_id: int, size: ZooSize = ZooSize(), seed: int = 0
) -> PreTrainedModel:
    """A freshly initialised fp32 model of family ``arch``; the same arguments give the same weights."""
    config = ARCHITECTURES.get(arch).make_config(vocab_size, eos_id, pad_id, size)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation=ATTN_IMPLEMENTATION, dtype=torch.float32
    )
    return enable_fast_paths(model)


def enable_fast_paths(model: M) -> M:
    """Install CPU speedups that keep the model's class, weights and outputs; call it after loading too.

    The three recurrent families scan the sequence in a Python loop on CPU. Mamba's loop is O(L^2) in the
    backward pass and needs a different algorithm (``fast_mamba``); RWKV's and RG-LRU's loops index one step
    of a (batch, L, width) tensor at a time and write results back in place, which the backward pass turns
    into a full-size zero tensor or copy per step. Their fast paths run the very same arithmetic on
    ``unbind`` slices and ``stack`` the outputs (one allocation each way), so both train ~20% faster
    (``benchmarks/train_speed.py``). Transformers come back untouched.
    """
    enable_fast_mamba(model)
    swaps = {RwkvSelfAttention: _FastRwkvSelfAttention, RecurrentGemmaRglru: _FastRglru}
    for module in model.modules():
        if type(module) in swaps:
            module.__class__ = swaps[type(module)]
    return model


def disable_fast_paths(model: M) -> M:
    """Put ``model`` back on the stock ``transformers`` code paths, to compare against or time them."""
    for module in model.modules():
        if isinstance(module, (FastMambaMixer, _FastRwkvSelfAttention, _FastRglru)):
            module.__class__ = cast(type, type(module).__base__)
    return model


class _FastRwkvSelfAttention(RwkvSelfAttention):
    """RWKV time mixing whose cache-free forward runs ``_wkv``; with a state (generation) it is the stock."""

    def forward(
        self, hidden: torch.Tensor, state: list[torch.Tensor] | None = None, use_cache: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if state is not None or (hidden.is_cuda and modeling_rwkv.rwkv_cuda_kernel is not None):
            return super().forward(hidden, state=state, use_cache=use_cache)
        receptance, key, value, _ = self.extract_key_value(hidden)
        return self.output(receptance * _wkv(self.time_decay, self.time_first, key, value)), None


def _wkv(
    time_decay: torch.Tensor, time_first: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """``rwkv_linear_attention_cpu`` from a zero state, operation for operation, over ``unbind`` slices."""
    decay = -torch.exp(time_decay)
    num_state = torch.zeros_like(key[:, 0], dtype=torch.float32)
    den_state = torch.zeros_like(num_state)
    max_state = torch.zeros_like(num_state) - 1e38
    outputs = []
    for current_key, current_value in zip(key.float().unbind(1), value.unbind(1), strict=True):
        max_for_output = torch.maximum(max_state, current_key + time_first)
        e1 = torch.exp(max_state - max_for_output)
        e2 = torch.exp(current_key + time_first - max_for_output)
        outputs.append((e1 * num_state + e2 * current_value) / (e1 * den_state + e2))
        max_for_state = torch.maximum(max_state + decay, current_key)
        e1 = torch.exp(max_state + decay - max_for_state)
        e2 = torch.exp(current_key - max_for_state)
        num_state = e1 * num_state + e2 * current_value
        den_state = e1 * den_state + e2
        max_state = max_for_state
    return torch.stack(outputs, 1).to(key.dtype)


class _FastRglru(RecurrentGemmaRglru):
    """RG-LRU whose scan from a zero state loops over ``unbind`` slices; other cases go to the stock scan."""

    def _rnn_scan(
        self,
        hidden_states: torch.Tensor,
        recurrent_gate: torch.Tensor,
        reset: torch.Tensor,
        recurrent_states: torch.Tensor | None,
        acc_dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if recurrent_states is not None or hidden_states.shape[1] == 1:
            return super()._rnn_scan(hidden_states, recurrent_gate, reset, recurrent_states, acc_dtype)
        gates = (recurrent_gate * ~reset).type(acc_dtype).unbind(1)
        state = None
        states = []
        for gate, x in zip(gates, hidden_states.type(acc_dtype).unbind(1), strict=True):
            state = x if state is None else gate * state + x  # the stock loop starts from a zero state
            states.append(state)
        return torch.stack(states, 1).type(hidden_states.dtype), cast(torch.Tensor, state)  # L >= 2 steps


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters, so tied input / output embeddings count once."""
    return sum(p.numel() for p in model.parameters())
