"""Training speed of the LT-MIA classifier and its variants on CPU, and its memory when the store it trains on
is larger than its memory budget (SPEC §6).

(a) ``throughput``: per variant at paper sizes, rows per second of one training pass (forward + backward,
    no optimizer step) through ``ltmia.classifier.train.accumulate``: length-sorted micro-batches of
    ``--micro-batch-size`` rows, each trimmed to its longest valid length, over 2,048 rows for the
    transformer (4,096 for the others). Inputs are L = 128 rows of random features whose masks are those of
    real texts (stdlib docstrings tokenised as extraction tokenises them, SPEC §2), so the trimming gain is
    the realistic one. The transformer is also timed ``naive``ly (random micro-batches at full L = 128, the
    same rows) and with 128-row micro-batches; every variant's scoring speed (``predict_logits``, inference
    mode) is given too.
(b) ``memory``: a float32 store of about ``--store-mib`` MiB is extracted (``ltmia.extract.build_store``) from
    two random tiny llamas, then the default classifier trains on it for one epoch under memory budgets of
    16 MiB, 64 MiB (half the store) and 1 GiB (the whole train split fits), each in a fresh process, in
    micro-batches of 16 rows (on CPU a training row of the transformer costs about 8 MiB of activations at
    L = 128, mostly attention maps, which would hide the buffer). Peak memory is the rise of VmHWM (reset
    through /proc/self/clear_refs) over the resident set before training. The ``floor`` run trains on 64
    in-memory rows: model, optimizer and one micro-batch's activations; a streamed run adds its buffer and
    one shard, not the store.

Timings are wall-clock after a 64-row warm-up pass, with the machine's load recorded before each (the
machine may be shared; ``extract_speed`` explains the idle check); the median and fastest runs are reported.

    PYTHONPATH=src python benchmarks/classifier_speed.py [--threads 1] [--repeats 2] [--store-mib 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from extract_speed import corpus_texts, machine_state, peak_extra_mib, summary, timed

from ltmia.artefacts import versions
from ltmia.classifier import LTMIA, VARIANTS, ArraySource, ClassifierConfig, build_classifier
from ltmia.classifier.batches import Window, predict_logits
from ltmia.classifier.train import TrainSettings, accumulate
from ltmia.extract import build_store
from ltmia.store import Rows, Store, StoreSettings
from ltmia.zoo.architectures import ZooSize, build_model
from ltmia.zoo.tokenizer import train_tokenizer

OUT = Path(__file__).parent / "results" / "classifier_speed.json"
NO_GROUPS_DROPPED = torch.tensor([], dtype=torch.long)
ROWS = {"transformer": 2048}  # rows per timed pass (4 micro-batches of 512); the others are faster
DEFAULT_ROWS = 4096
STORE_ROW_BYTES = 128 * (154 * 4 + 1) + 127 * (4 * 4 + 2)  # features, mask and token stats of one text
MEMORY_BUDGETS_MIB = (16, 64, 1024)


# ------------------------------------------------------------------------------------------- the store


def real_texts(count: int) -> list[str]:
    """``count`` distinct texts: stdlib docstrings one by one (their own lengths), numbered once reused."""
    docs, _ = corpus_texts(1)
    return [docs[i % len(docs)] + ("" if i < len(docs) else f" ({i // len(docs)})") for i in range(count)]


def build_benchmark_store(out: Path, texts: int) -> Path:
    """A float32 store of ``texts`` docstrings through two random tiny llamas (V = 4,096), 90/5/5 splits."""
    docs = real_texts(texts)
    tokenizer = train_tokenizer(docs, vocab_size=4096)
    size = ZooSize(hidden=64, layers=2, heads=2)
    target, reference = (
        build_model("llama", len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, size, seed=seed)
        for seed in (0, 1)
    )
    n_train, n_val = int(0.9 * texts), int(0.05 * texts)
    split = ["train"] * n_train + ["val"] * n_val + ["test"] * (texts - n_train - n_val)
    rows = Rows(docs, [i % 2 for i in range(texts)], split)
    settings = StoreSettings(shard_size=64, batch_size=32)
    return build_store(target, reference, tokenizer, rows, out, settings)


def directory_mib(path: Path) -> float:
    return round(sum(file.stat().st_size for file in path.iterdir()) / 2**20, 1)


# ----------------------------------------------------------------------------------------- throughput


def make_window(masks: torch.Tensor, rows: int) -> Window:
    """``rows`` rows of random (128, 154) features with the real masks (cycled), half members."""
    generator = torch.Generator().manual_seed(0)
    mask = masks[torch.arange(rows) % masks.shape[0]]
    features = torch.where(mask[..., None], torch.randn(rows, *mask.shape[1:], 154, generator=generator), 0.0)
    labels = (torch.arange(rows) % 2).float()
    return Window(features, mask, labels, torch.ones(rows), torch.arange(rows))


def naive_pass(model: torch.nn.Module, window: Window, micro_batch_size: int) -> None:
    """Forward + backward in random micro-batches at full L: what trimming and sorting are compared with."""
    order = torch.randperm(len(window.order), generator=torch.Generator().manual_seed(1))
    for ids in order.split(micro_batch_size):
        logits = model(window.features[ids], window.mask[ids])
        torch.nn.functional.binary_cross_entropy_with_logits(logits, window.labels[ids]).backward()


def throughput(variant: str, masks: torch.Tensor, args: argparse.Namespace) -> dict[str, object]:
    """Training and scoring rows/s of one variant; a 64-row pass of each kind warms up first."""
    rows = ROWS.get(variant, DEFAULT_ROWS)
    window = make_window(masks, rows)
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(variant=variant))
    result: dict[str, object] = {"parameters": sum(p.numel() for p in model.parameters()), "rows": rows}
    runs = {"ltmia": args.micro_batch_size, **({"ltmia_micro_128": 128} if variant == "transformer" else {})}
    model.train()
    for name, micro in runs.items():
        settings = TrainSettings(micro_batch_size=micro)
        accumulate(model, window, window.order[:64], rows, NO_GROUPS_DROPPED, settings)  # warm-up
        result[name] = rows_per_second(
            lambda s=settings: accumulate(model, window, window.order, rows, NO_GROUPS_DROPPED, s), rows, args
        )
    if variant == "transformer":
        result["naive_full_length"] = rows_per_second(
            lambda: naive_pass(model, window, args.micro_batch_size), rows, args
        )
    model.eval()
    predict_logits(model, window.features[:64], window.mask[:64], NO_GROUPS_DROPPED, 64)  # warm-up
    result["scoring"] = rows_per_second(
        lambda: predict_logits(model, window.features, window.mask, NO_GROUPS_DROPPED, args.micro_batch_size),
        rows,
        args,
    )
    return result


def rows_per_second(run, rows: int, args: argparse.Namespace) -> dict[str, object]:
    timing = summary(timed(run, args.repeats, args.max_wait))
    return {
        "median_rows_per_s": round(rows / timing["median_s"], 1),
        "fastest_rows_per_s": round(rows / timing["fastest_s"], 1),
        **timing,
    }


# --------------------------------------------------------------------------------------------- memory


def floor_source(rows: int = 64) -> ArraySource:
    """A tiny in-memory source (48 train, 16 val rows): training on it costs the model, optimizer and one
    micro-batch's activations, the floor under every streamed run."""
    mask = torch.ones(rows, 128, dtype=torch.bool)
    mask[:, -1] = False
    split = ["train"] * (rows - 16) + ["val"] * 16
    return ArraySource(torch.randn(rows, 128, 154), mask, torch.arange(rows) % 2, split)


def train_once(store: Path, budget_mib: int, args: argparse.Namespace) -> dict[str, object]:
    """One epoch on ``store`` under ``budget_mib`` (0: on `floor_source` instead), in a fresh process:
    peak memory and time."""
    torch.set_num_threads(args.threads)
    source = Store(store) if budget_mib else floor_source()
    classifier = LTMIA(
        epochs=1,
        warmup_epochs=0,
        batch_size=args.memory_batch_size,
        micro_batch_size=args.memory_micro_batch_size,
        memory_budget_bytes=max(1, budget_mib) * 2**20,
    )
    started = time.perf_counter()
    peak = peak_extra_mib(lambda: classifier.fit(source))
    return {
        "budget_mib": budget_mib,
        "shuffle_buffer_rows": classifier.training_["shuffle_buffer_rows"],
        "train_rows": classifier.training_["train_sources"][0]["rows"],
        "seconds": round(time.perf_counter() - started, 1),
        **peak,
    }


def memory(store: Path, args: argparse.Namespace) -> dict[str, object]:
    """Peak memory of one epoch on ``store`` per budget, and of the in-memory floor, each in a new process."""
    result: dict[str, object] = {
        "store_mib": directory_mib(store),
        "store_rows": Store(store).n,
        "shards": len(Store(store).manifest["shards"]),
        "batch_size": args.memory_batch_size,
        "micro_batch_size": args.memory_micro_batch_size,
    }
    for budget in (0, *MEMORY_BUDGETS_MIB):
        command = [sys.executable, __file__, *sys.argv[1:], "--child-store", str(store), "--child-budget"]
        done = subprocess.run([*command, str(budget)], check=True, capture_output=True, text=True)
        name = f"budget_{budget}mib" if budget else "floor_in_memory_64_rows"
        result[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print("memory", name, json.dumps(result[name]), flush=True)
    return result


# --------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--micro-batch-size", type=int, default=512)
    parser.add_argument("--store-mib", type=int, default=128, help="size of the store trained on in (b)")
    parser.add_argument("--memory-batch-size", type=int, default=512)
    parser.add_argument(
        "--memory-micro-batch-size",
        type=int,
        default=16,
        help="small, so that activations do not hide the buffer",
    )
    parser.add_argument("--max-wait", type=float, default=5.0, help="seconds to wait for idle CPUs per run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child-store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-budget", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_budget is not None:  # one memory run, in its own process; the result on stdout's last line
        print(json.dumps(train_once(args.child_store, args.child_budget, args)))
        return
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine_state_at_start": machine_state(0),
        "micro_batch_size": args.micro_batch_size,
    }
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        store = build_benchmark_store(Path(work) / "store", args.store_mib * 2**20 // STORE_ROW_BYTES)
        report["store_build_s"] = round(time.perf_counter() - started, 1)
        masks = torch.cat([shard["mask"] for shard in Store(store).iter_shards("train")])
        lengths = masks.sum(-1).float()
        report["valid_lengths"] = {
            "mean": round(float(lengths.mean()), 1),
            "full_fraction": round(float((lengths == 127).float().mean()), 3),
        }
        report["throughput"] = {}
        for variant in VARIANTS:
            report["throughput"][variant] = throughput(variant, masks, args)
            print(variant, json.dumps(report["throughput"][variant])[:300], flush=True)
        report["memory"] = memory(store, args)
    report["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
