"""Training speed of every zoo family under the fine-tuning recipe, with and without ltmia's fast paths.

The recipe is batch 16, sequence length 128, AdamW, fp32 on CPU with 2 threads; a step is forward + backward
+ optimizer step. Families that ``enable_fast_paths`` changes (Mamba) are also timed on the stock
``transformers`` path, with fewer steps since a stock Mamba step takes about a minute. Step times are
wall-clock; the median is reported (other processes on a shared machine inflate single steps) together with
the fastest step and the load average before the run.

    PYTHONPATH=src python benchmarks/train_speed.py [--families mamba llama] [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers.models.mamba.modeling_mamba import MambaMixer

from ltmia.zoo.architectures import ARCHITECTURES, build_model, count_parameters
from ltmia.zoo.fast_mamba import FastMambaMixer

VOCAB, EOS, PAD = 4096, 0, 1
BATCH, LENGTH = 16, 128
OUT = Path(__file__).parent / "results" / "train_speed.json"


def step_times(model: torch.nn.Module, warmup: int, steps: int) -> list[float]:
    """Seconds per training step, after ``warmup`` untimed steps (allocator and thread-pool warm-up)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(2, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    times = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return times


def stock(model: torch.nn.Module) -> torch.nn.Module:
    """The same model on the stock ``transformers`` code path (undoes ``enable_fast_paths``)."""
    for module in model.modules():
        if isinstance(module, FastMambaMixer):
            module.__class__ = MambaMixer
    return model


def summary(times: list[float], params: int) -> dict[str, float | int]:
    median = statistics.median(times)
    return {
        "params": params,
        "steps_per_s": round(1 / median, 3),
        "median_step_s": round(median, 4),
        "fastest_step_s": round(min(times), 4),
        "timed_steps": len(times),
    }


def measure(arch: str, warmup: int, steps: int, stock_steps: int) -> dict[str, dict[str, float | int]]:
    """``fast`` (as ``build_model`` returns it) and, where that differs from stock, ``stock``."""
    model = build_model(arch, VOCAB, EOS, PAD)
    params = count_parameters(model)
    result = {"fast": summary(step_times(model, warmup, steps), params)}
    if stock_steps and any(isinstance(m, FastMambaMixer) for m in model.modules()):
        slow = stock(build_model(arch, VOCAB, EOS, PAD))
        result["stock"] = summary(step_times(slow, 1, stock_steps), params)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=ARCHITECTURES.names())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--stock-steps", type=int, default=2, help="0 skips the stock-path timings")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {
        "recipe": {"batch": BATCH, "length": LENGTH, "vocab": VOCAB, "optimizer": "AdamW", "dtype": "float32"},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": os.getloadavg()[0],
        "families": {},
    }
    for arch in args.families:
        report["families"][arch] = measure(arch, args.warmup, args.steps, args.stock_steps)
        print(arch, json.dumps(report["families"][arch]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
