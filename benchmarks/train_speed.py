"""Training speed of every zoo family under the fine-tuning recipe, with and without ltmia's fast paths.

The recipe is batch 16, sequence length 128, AdamW, fp32 on CPU with 2 threads; a step is forward + backward
+ optimizer step. Families that ``enable_fast_paths`` changes (Mamba, RWKV, RecurrentGemma) are also timed on
the stock ``transformers`` path (``stock``), with fewer steps since a stock Mamba step takes about a minute.

Step times are wall-clock. On a shared machine other processes inflate them badly (with 2 threads on 2
cores, one busy neighbour can make a step 10-30x slower), so before each timing the script waits, up to
``--max-wait`` seconds, for the CPUs to be idle, records whether they were, and reports the median step
together with the fastest.

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
from machine import cpu_busy  # benchmarks/machine.py (scripts run from this folder)

from ltmia.zoo.architectures import ARCHITECTURES, build_model, count_parameters, disable_fast_paths

VOCAB, EOS, PAD = 4096, 0, 1
BATCH, LENGTH = 16, 128
OUT = Path(__file__).parent / "results" / "train_speed.json"


def wait_for_idle(max_wait: float, threshold: float = 0.15) -> bool:
    """Wait until the CPUs are idle (True), or give up after ``max_wait`` seconds (False)."""
    deadline = time.monotonic() + max_wait
    while cpu_busy() > threshold:
        if time.monotonic() > deadline:
            return False
    return True


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


def timing(model: torch.nn.Module, warmup: int, steps: int, max_wait: float) -> dict[str, object]:
    idle = wait_for_idle(max_wait)
    times = step_times(model, warmup, steps)
    median = statistics.median(times)
    return {
        "steps_per_s": round(1 / median, 3),
        "median_step_s": round(median, 4),
        "fastest_step_s": round(min(times), 4),
        "timed_steps": len(times),
        "cpus_idle_before": idle,
    }


def measure(arch: str, args: argparse.Namespace) -> dict[str, object]:
    """Parameters, ``fast`` (as ``build_model`` returns it) and, where that differs from stock, ``stock``."""
    model = build_model(arch, VOCAB, EOS, PAD)
    classes = [type(m) for m in model.modules()]
    result = {
        "params": count_parameters(model),
        "fast": timing(model, args.warmup, args.steps, args.max_wait),
    }
    stock = disable_fast_paths(model)
    if args.stock_steps and [type(m) for m in stock.modules()] != classes:
        result["stock"] = timing(stock, 1, args.stock_steps, args.max_wait)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=ARCHITECTURES.names())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--stock-steps", type=int, default=3, help="0 skips the stock-path timings")
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for idle CPUs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {
        "recipe": {"batch": BATCH, "length": LENGTH, "optimizer": "AdamW", "dtype": "float32"},
        "vocab": VOCAB,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "families": {},
    }
    for arch in args.families:
        report["families"][arch] = measure(arch, args)
        print(arch, json.dumps(report["families"][arch]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
