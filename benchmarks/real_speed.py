"""Speed and memory of real pretrained LMs on this machine: fine-tuning steps and extraction (JSON).

For SmolLM2-135M (V = 49,152) and Gemma-3-270M (V = 262,144), each in fp32 and under bf16 autocast:

- a fine-tuning step (batch 16 x 128 tokens, AdamW; forward + backward + optimiser step), full and LoRA;
- extraction of 16 texts (``ltmia.signals.extract``: both models' forward passes, the 154 features and every
  baseline's token stats) against the two bare forward passes it needs (full forward, float32 logits): the
  ratio b / a (goal <= 1.10). With ``--compare-materialised`` also extraction with every LM head run whole
  (``ltmia.lm_head`` off: the path before the deferred head), c / a, and the two forward passes with their
  heads deferred (``hidden_only``: what extraction spends outside the LM head and the features). The runs
  alternate (a b [c d] a b [c d] ...), so a machine whose load changes weighs on all alike, and each records
  its process CPU time beside its wall time (``cpu_times``: steadier on a shared machine);
- the peak resident memory of each measurement, which runs in a process of its own; for extraction also the
  peak after the extraction warm-up alone (``peak_rss_extract_mib``: before any bare pass or the
  materialised path ran).

Timings are the median of ``--repeats`` after one warm-up; ``cpu_busy`` before each records whether the
machine was idle. Texts are real (python-docs), every sequence padded to 128 tokens as SPEC §2 does.
Results replace the entries of the same model, precision and measurement in ``--out`` and keep the others.

    PYTHONPATH=src python benchmarks/real_speed.py [--models smollm2-135m gemma3-270m] [--repeats 2]
        [--what train extract] [--precisions fp32 bf16] [--compare-materialised]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import cpu_busy  # benchmarks/machine.py (scripts run from this folder)

OUT = Path(__file__).parent / "results" / "real_speed.json"
BATCH, LENGTH = 16, 128


def texts() -> list[str]:
    from ltmia.corpora import corpus_texts, get_corpus
    from ltmia.data import filter_texts, seeded_order

    pool = filter_texts(corpus_texts(get_corpus("python-docs"), pool="attack"))
    return [pool[i] for i in seeded_order(pool, 0)[:BATCH]]


def median_seconds(step, repeats: int) -> tuple[float, list[float]]:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def train_step(model_name: str, mode: str, precision: str, repeats: int) -> dict:
    from ltmia.data import encode
    from ltmia.finetune import Recipe, apply_lora, token_loss
    from ltmia.models import load_causal_lm, load_tokenizer

    spec = f"packaged:{model_name}"
    tokenizer = load_tokenizer(spec)
    model = load_causal_lm(spec)
    if mode == "lora":
        model = apply_lora(model, Recipe(lora=True))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-5)
    ids, mask = encode(tokenizer, texts(), "text", LENGTH, "never")
    mask = torch.ones_like(mask)  # every position counts: the step's cost at full length

    def step() -> None:
        loss, n = token_loss(model, ids, mask, precision)
        optimizer.zero_grad(set_to_none=True)
        (loss / n).backward()
        optimizer.step()

    idle = cpu_busy() < 0.15
    seconds, times = median_seconds(step, repeats)
    return {"seconds_per_step": seconds, "steps_per_second": 1 / seconds, "times": times, "idle_before": idle}


def extraction(model_name: str, precision: str, repeats: int, budget_mib: int, materialised: bool) -> dict:
    from ltmia import lm_head
    from ltmia.data import encode
    from ltmia.device import autocast, float32_head
    from ltmia.models import load_causal_lm, load_tokenizer
    from ltmia.signals import extract
    from ltmia.tokenstats import HEAD_BLOCK_POSITIONS

    spec = f"packaged:{model_name}"
    tokenizer = load_tokenizer(spec)
    target, reference = load_causal_lm(spec), load_causal_lm(spec)
    batch = texts()
    ids, mask = encode(tokenizer, batch, "text", LENGTH, "never")
    cpu = torch.device("cpu")
    deferrable = lm_head.DEFERRABLE

    @torch.no_grad()
    def bare() -> None:
        for model in (target, reference):
            with autocast(precision, cpu), float32_head(model):
                model(input_ids=ids, attention_mask=mask).logits.float()

    def full() -> None:
        extract(
            target, reference, tokenizer, batch, precision=precision, memory_budget_bytes=budget_mib << 20
        )

    @torch.no_grad()
    def hidden_only() -> None:
        for model in (target, reference):
            lm_head.forward_logits(model, ids, mask, precision, HEAD_BLOCK_POSITIONS)

    def whole_heads() -> None:
        lm_head.DEFERRABLE = frozenset()
        try:
            full()
        finally:
            lm_head.DEFERRABLE = deferrable

    idle = cpu_busy() < 0.15
    steps = {"extract": full, "bare": bare}
    if materialised:
        steps |= {"materialised": whole_heads, "hidden_only": hidden_only}
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu_times: dict[str, list[float]] = {name: [] for name in steps}
    full()  # warm-up
    peak_extract = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, step in steps.items():
        if name != "extract":
            step()  # warm-up
    for _ in range(repeats):
        for name, step in steps.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append(time.perf_counter() - started)
            cpu_times[name].append(time.process_time() - started_cpu)
    a, b = statistics.median(times["bare"]), statistics.median(times["extract"])
    result = {
        "bare_forward_seconds": a,
        "extract_seconds": b,
        "ratio_b_over_a": b / a,
        "times": times,
        "cpu_times": cpu_times,
        "cpu_ratio_b_over_a": statistics.median(cpu_times["extract"]) / statistics.median(cpu_times["bare"]),
        "memory_budget_mib": budget_mib,
        "head_deferred": lm_head.deferral_blocker(target) is None,
        "valid_positions": int(mask[:, 1:].sum()),
        "peak_rss_extract_mib": peak_extract,
        "idle_before": idle,
    }
    if materialised:
        c = statistics.median(times["materialised"])
        result |= {
            "materialised_extract_seconds": c,
            "ratio_c_over_a": c / a,
            "cpu_ratio_c_over_a": statistics.median(cpu_times["materialised"])
            / statistics.median(cpu_times["bare"]),
            "hidden_only_seconds": statistics.median(times["hidden_only"]),
        }
    return result


def run_one(config: dict) -> dict:
    torch.set_num_threads(config["threads"])
    if config["what"] == "train":
        result = train_step(config["model"], config["mode"], config["precision"], config["repeats"])
    else:
        result = extraction(
            config["model"],
            config["precision"],
            config["repeats"],
            config["budget_mib"],
            config.get("materialised", False),
        )
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**config, **result}


def identity(result: dict) -> tuple:
    """What a result measures: entries with the same identity replace one another in the JSON."""
    return result["model"], result["precision"], result["what"], result.get("mode")


def merged(out: Path, results: list[dict]) -> list[dict]:
    """The results already in ``out`` with those measured again replaced, in their order, then new ones."""
    fresh = {identity(r): r for r in results}
    old = json.loads(out.read_text())["results"] if out.exists() else []
    kept = [fresh.pop(identity(r), r) for r in old]
    return kept + list(fresh.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-mib", type=int, default=8192, help="extraction memory budget")
    parser.add_argument("--what", nargs="+", choices=["train", "extract"], default=["train", "extract"])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument(
        "--compare-materialised",
        action="store_true",
        help="also time extraction with every LM head run whole (the path before ltmia.lm_head)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a JSON config: run it here and print the result
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    from ltmia.device import cpu_bf16_flags

    configs = []
    for model in args.models:
        for precision in args.precisions:
            base = {"model": model, "precision": precision, "repeats": args.repeats, "threads": args.threads}
            if "train" in args.what:
                configs += [{**base, "what": "train", "mode": mode} for mode in ("full", "lora")]
            if "extract" in args.what:
                extract = {**base, "what": "extract", "budget_mib": args.budget_mib}
                configs.append(extract | ({"materialised": True} if args.compare_materialised else {}))
    results = []
    for config in configs:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            results.append({**config, "error": done.stderr.strip().splitlines()[-1]})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
    machine = {
        "processor": platform.processor() or platform.machine(),
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": machine, "batch": BATCH, "length": LENGTH, "results": merged(args.out, results)},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
