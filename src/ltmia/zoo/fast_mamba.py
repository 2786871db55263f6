"""A fast CPU path for ``transformers``' Mamba that computes what the stock path computes.

Without the CUDA kernels (``mamba_ssm``), ``MambaMixer`` runs its selective scan as a Python loop over the
sequence, indexing one time step of full (batch, d, L, n) tensors at a time. Autograd turns each index into
a full-size zero tensor in the backward pass, so a training step costs O(L^2) memory traffic: 25-27 s per
step (batch 16, L = 128) for the zoo's Mamba on 2 idle CPU cores, against ~0.2 s for its transformers.

``selective_scan`` evaluates the same recurrence ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``,
``y_t = C_t . h_t`` with a hand-written backward, the way the CUDA kernel does: the (batch, L, d, n) states
are never stored whole. Time is cut into short chunks whose (batch, chunk, d, n) buffers stay in the CPU
cache; within a chunk the recurrence is one fused multiply-add per step (the cheap part, sequential by
nature), and everything else (discretisation, the contraction with C, every gradient reduction) is one
vectorised op per chunk. The backward pass recomputes a chunk's states from the state saved at its start
(recomputing from cache is cheaper than reading stored states back from memory), then runs the adjoint
recurrence ``g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1}`` backwards. Only multiplications by decays <= 1 and
additions occur, as in the sequential loop, so it is just as stable and agrees with it to float rounding.
A step then takes 0.5-0.6 s: the scan still touches batch x L x d x n = 8 M state values per layer several
times, which no amount of vectorisation avoids in eager PyTorch.

The model stays a ``MambaForCausalLM`` with the same config and weights: ``enable_fast_mamba`` only swaps
each mixer's class for a subclass overriding ``forward``, and whatever that subclass does not handle (a
cache, i.e. generation) goes to the stock ``forward``.
"""

from __future__ import annotations

import importlib.util
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.mamba.modeling_mamba import MambaMixer, apply_mask_to_padding_states

M = TypeVar("M", bound=nn.Module)
CHUNK = 8  # time steps per chunk; at the zoo's size a (16, 8, 256, 16) fp32 buffer is 2 MB, cache-sized


def enable_fast_mamba(model: M) -> M:
    """Switch every Mamba mixer in ``model`` to the chunked scan; other models come back untouched.

    Skipped when ``mamba_ssm`` is installed: its fused CUDA kernels are faster still.
    """
    if importlib.util.find_spec("mamba_ssm") is None:
        for module in model.modules():
            if type(module) is MambaMixer:
                module.__class__ = FastMambaMixer
    return model


class FastMambaMixer(MambaMixer):
    """``MambaMixer`` whose cache-free forward uses ``selective_scan``; same parameters, same outputs."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: object | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        """Steps 1-4 of ``MambaMixer.forward`` (its torch path, no cache), kept (batch, L, channels)-major."""
        if cache is not None or kwargs:
            return super().forward(hidden_states, cache=cache, attention_mask=attention_mask, **kwargs)
        dtype, seq_len = hidden_states.dtype, hidden_states.shape[1]
        hidden_states = apply_mask_to_padding_states(hidden_states, attention_mask)
        x, gate = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = self.act(self.conv1d(x.transpose(1, 2))[..., :seq_len]).transpose(1, 2)
        x = apply_mask_to_padding_states(x, attention_mask)
        time_step, B, C = torch.split(
            self.x_proj(x), [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1
        )
        # Like the stock mixer, read dt_proj's weight directly (so LoRA never targets dt_proj).
        dt = F.softplus(F.linear(time_step, self.dt_proj.weight, self.dt_proj.bias.float()))
        y = selective_scan(x, dt, -torch.exp(self.A_log.float()), B, C)
        y = (y + x * self.D.float()) * F.silu(gate)
        return self.out_proj(y.to(dtype))


def selective_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """``y_t = C_t . h_t`` with ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``, ``h_{-1} = 0``, per channel.

    Shapes: ``x``, ``dt`` (batch, L, d); ``A`` (d, n); ``B``, ``C`` (batch, L, n). Returns (batch, L, d).
    """
    return _SelectiveScan.apply(dt * x, dt.contiguous(), A, B.contiguous(), C.contiguous())


class _SelectiveScan(torch.autograd.Function):
    """The scan on ``u = dt x``; saves only the inputs and one state per chunk for the backward pass."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
    ) -> torch.Tensor:
        y = torch.empty_like(u)
        h = u.new_zeros(u.shape[0], *A.shape)
        starts = []
        for steps in _chunks(u.shape[1]):
            starts.append(h)
            _, H = _chunk_states(u, dt, A, B, steps, h)
            h = H[:, -1].clone()
            y[:, steps] = torch.linalg.vecdot(H, C[:, steps, None, :])
        ctx.save_for_backward(u, dt, A, B, C, torch.stack(starts))
        return y

    @staticmethod
    def backward(
        ctx: Any, gy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        u, dt, A, B, C, starts = ctx.saved_tensors
        gy = gy.contiguous()
        du, ddt, dB, dC = (torch.empty_like(t) for t in (u, dt, B, C))
        dA = torch.zeros_like(A)
        g_after = torch.zeros_like(starts[0])  # gradient reaching a chunk's last state from later steps
        for k, steps in reversed(list(enumerate(_chunks(u.shape[1])))):
            a, H = _chunk_states(u, dt, A, B, steps, starts[k])
            decays = a.unbind(1)
            G = gy[:, steps, :, None] * C[:, steps, None, :]  # gradient of each state: its own output ...
            grads = G.unbind(1)
            grads[-1].add_(g_after)
            for i in range(len(grads) - 2, -1, -1):  # ... plus what flows back through later states
                grads[i].addcmul_(decays[i + 1], grads[i + 1])
            g_after = decays[0] * grads[0]
            dC[:, steps] = (gy[:, steps, None, :] @ H).squeeze(-2)
            du[:, steps] = torch.linalg.vecdot(G, B[:, steps, None, :])
            dB[:, steps] = (u[:, steps, None, :] @ G).squeeze(-2)
            G.mul_(a)  # now the gradient of dt_t A: g_t * a_t * h_{t-1}
            G[:, 1:].mul_(H[:, :-1])
            G[:, 0].mul_(starts[k])
            ddt[:, steps] = torch.linalg.vecdot(G, A)
            dA += (G * dt[:, steps, :, None]).sum((0, 1))
        return du, ddt, dA, dB, dC


def _chunks(length: int) -> list[slice]:
    return [slice(start, min(start + CHUNK, length)) for start in range(0, length, CHUNK)]


def _chunk_states(
    u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, steps: slice, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decays ``a`` and states ``H`` (both (batch, chunk, d, n)) of one chunk entered with state ``h0``."""
    a = torch.exp(dt[:, steps, :, None] * A)
    H = u[:, steps, :, None] * B[:, steps, None, :]  # the inputs dt B x, turned into states in place
    states, decays = H.unbind(1), a.unbind(1)
    states[0].addcmul_(decays[0], h0)
    for i in range(1, len(states)):
        states[i].addcmul_(decays[i], states[i - 1])
    return a, H
