"""Cost of signal extraction next to the two forward passes it needs, and what the feature code gains.

Model pairs (target and reference: same family and size, different random weights): the ``tiny`` zoo
llama (default size, V = 4,096, 1.3 M parameters); ``large_v``, a llama of hidden 64 / 2 layers with a
V = 128,000 head (random weights; texts use the 4,096-token tokenizer, but every rank is taken over all
128,000 logits); ``wide_head``, the same vocabulary behind a hidden size of 2,048 (a 1B-class model's head
and 2 of its layers); and ``deep_1b``, that model with all 16 layers (1.2 B parameters each). With a hidden
size of 64 the two passes are so cheap that feature work must dominate, while in a model of the size users
audit the passes dominate.
For each pair, in a fresh subprocess so that memory peaks do not mix:

(a) ``forward``: the two bare forward passes over the texts, batched exactly as ``extract`` batches them
    (same sub-batches under the memory budget), logits dropped;
(b) ``extract``: ``ltmia.signals.extract`` (tokenisation, both passes, LT-MIA features, baseline token stats)
    plus scoring every registered attack from the stats (``ltmia.attacks.score``); the ratio b / a is the
    price of the signals over the passes themselves (target: <= 1.10);
(c) ``features`` alone on fixed logits, ltmia vs a naive implementation that sorts the whole vocabulary of
    every position (stable sorts for the top-k / bottom-k ids, binary search in the sorted row for ranks);
    the naive one is checked against ltmia on a small case with ties before anything is timed, and on the
    timed logits too.

Peak memory: the rise of the peak resident set (VmHWM, reset through /proc/self/clear_refs after
``malloc_trim``) over the resident set before one untimed run of a phase; extract's is measured under each
``--memory-budgets-mib``. Timings are wall-clock, a/b runs interleaved, after one warm-up run; the machine
may be shared, so the 1-minute load average is recorded before every timed run, with whether the CPUs were
idle (busy fraction over 1 s below 15 %, waiting up to ``--max-wait`` s for that), and both the median and
the fastest run are reported (the fastest is the least disturbed).

    PYTHONPATH=src python benchmarks/extract_speed.py [--configs tiny large_v] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import ctypes
import gc
import inspect
import itertools
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers
from machine import cpu_busy  # benchmarks/machine.py (scripts run from this folder)

from ltmia.attacks import ATTACKS, score
from ltmia.data import SEQ_LEN, encode
from ltmia.features import feature_dim, global_block, lt_features_and_stats
from ltmia.signals import extract, sub_batch_size
from ltmia.zoo.architectures import ZooSize, build_model, count_parameters
from ltmia.zoo.tokenizer import train_tokenizer

OUT = Path(__file__).parent / "results" / "extract_speed.json"
TOKENIZER_VOCAB = 4096
CONFIGS = {
    "tiny": {"arch": "llama", "vocab": TOKENIZER_VOCAB, "size": ZooSize(), "texts": 64},
    "large_v": {
        "arch": "llama",
        "vocab": 128_000,
        "size": ZooSize(hidden=64, layers=2, heads=2),
        "texts": 16,
    },
    "wide_head": {  # a 1B-class head (hidden 2,048, V = 128,000; 2 of Llama-3.2-1B's 16 layers)
        "arch": "llama",
        "vocab": 128_000,
        "size": ZooSize(hidden=2048, layers=2, heads=16),
        "texts": 16,
    },
    "deep_1b": {  # a whole 1B-class model: Llama-3.2-1B's width, depth and vocabulary (1.2 B parameters)
        "arch": "llama",
        "vocab": 128_000,
        "size": ZooSize(hidden=2048, layers=16, heads=16),
        "texts": 4,
    },
}


# ----------------------------------------------------------------------------------------------- texts


def corpus_texts(count: int, chars: int = 1500) -> tuple[list[str], list[str]]:
    """Real English from standard-library docstrings: (all docstrings, ``count`` texts of ~``chars`` chars,
    long enough to fill L = 128 tokens)."""
    import argparse as argparse_module
    import collections
    import email.message
    import pathlib
    import subprocess as subprocess_module
    import typing

    docs = []
    for module in (
        argparse_module,
        collections,
        email.message,
        pathlib,
        subprocess_module,
        typing,
        json,
        inspect,
    ):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                if doc and len(doc.strip()) > 50:
                    docs.append(" ".join(doc.split()))
    docs = list(dict.fromkeys(docs))
    texts, current = [], ""
    for doc in itertools.cycle(docs):  # texts repeat once the docstrings run out; timings do not care
        current = f"{current} {doc}".strip()
        if len(current) >= chars:
            texts.append(current)
            current = ""
            if len(texts) == count:
                return docs, texts
    raise ValueError("no docstrings to build texts from")


# ---------------------------------------------------------------------------------------- measurement


def machine_state(max_wait: float, threshold: float = 0.15) -> dict[str, object]:
    """Wait up to ``max_wait`` s for idle CPUs; the 1-minute load average and whether they were idle."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return {"load_1min": round(os.getloadavg()[0], 2), "cpu_busy": round(busy, 2), "idle": busy <= threshold}


def status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_extra_mib(run) -> dict[str, object]:
    """Run ``run()`` once; MiB by which the peak resident set rose above the resident set before it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back: no inflated baseline
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM after clear_refs"
    except OSError:
        method = "VmHWM (not reset: an upper bound)"
    before = status_kib("VmRSS")
    run()
    return {"peak_extra_mib": round((status_kib("VmHWM") - before) / 1024, 1), "method": method}


def timed(run, repeats: int, max_wait: float) -> list[dict[str, object]]:
    samples = []
    for _ in range(repeats):
        state = machine_state(max_wait)
        started = time.perf_counter()
        run()
        samples.append({"s": round(time.perf_counter() - started, 4), **state})
    return samples


def summary(samples: list[dict[str, object]]) -> dict[str, object]:
    times = [sample["s"] for sample in samples]
    return {
        "median_s": round(statistics.median(times), 4),
        "fastest_s": round(min(times), 4),
        "runs": samples,
    }


# ------------------------------------------------------------------------------------- naive features


def naive_log_ranks(sorted_values: torch.Tensor, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(C, V) ascending row, (C, V) logits, (C, m) ids -> lr(rank), rank = 1 + #{u: z[u] > z[id]}."""
    vocab = z.shape[-1]
    greater = vocab - torch.searchsorted(sorted_values, z.gather(-1, ids), side="right")
    return torch.log1p((1 + greater).float()) / math.log(vocab + 1)


def naive_pair(z_t: torch.Tensor, z_r: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = z_t.gather(-1, ids), z_r.gather(-1, ids)
    top = torch.maximum(a, b)
    return a - top, b - top


def naive_chunk(z_t: torch.Tensor, z_r: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """(C, V) x2, (C,) -> (C, 7k+7): truth, head, tail and loss blocks from full sorts of every row."""
    rows = z_t.shape[0]
    desc_t_values, desc_t = torch.sort(z_t, dim=-1, descending=True, stable=True)
    tail = torch.sort(z_t, dim=-1, stable=True).indices[:, :k]
    desc_r_values, desc_r = torch.sort(z_r, dim=-1, descending=True, stable=True)
    head, ref_top = desc_t[:, :k], desc_r[:, :k]
    asc_t, asc_r = desc_t_values.flip(-1), desc_r_values.flip(-1)
    ce_t = -torch.log_softmax(z_t, -1).gather(-1, y[:, None]).squeeze(-1)
    ce_r = -torch.log_softmax(z_r, -1).gather(-1, y[:, None]).squeeze(-1)
    y_t, y_r = naive_pair(z_t, z_r, y[:, None])
    head_t, head_r = naive_pair(z_t, z_r, head)
    tail_t, tail_r = naive_pair(z_t, z_r, tail)
    truth_ranks = [naive_log_ranks(asc_t, z_t, y[:, None]), naive_log_ranks(asc_r, z_r, y[:, None])]
    head_ranks = [naive_log_ranks(asc_r, z_r, head), naive_log_ranks(asc_t, z_t, ref_top)]
    blocks = [
        torch.cat([y_t, y_r, *truth_ranks], -1),
        torch.stack([head_t, head_r, *head_ranks], -1).reshape(rows, 4 * k),
        torch.stack([tail_t, tail_r, naive_log_ranks(asc_r, z_r, tail)], -1).reshape(rows, 3 * k),
        torch.stack([ce_t, ce_r, ce_t - ce_r], -1),
    ]
    return torch.cat(blocks, -1)


def naive_features(
    target_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    k: int = 20,
    chunk_positions: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC §4 features the straightforward way: every position's vocabulary fully sorted.

    Top-k and bottom-k ids by stable sorts (equal logits: lower id first; three sorts of V per position),
    ranks by binary search of the query in the position's sorted row, CE by log-softmax. Same layout as
    ``ltmia.features.lt_features``.
    """
    n_texts, length, _ = target_logits.shape
    valid = attention_mask[:, 1:].bool()
    features = torch.zeros(n_texts, length, feature_dim(k))
    positions = valid.nonzero()
    for start in range(0, positions.shape[0], chunk_positions):
        n, t = positions[start : start + chunk_positions].unbind(1)
        z_t, z_r = target_logits[n, t].float(), reference_logits[n, t].float()
        features[n, t, : 7 * k + 7] = naive_chunk(z_t, z_r, input_ids[n, t + 1], k)
    ce_t, ce_r = features[:, :-1, 7 * k + 4], features[:, :-1, 7 * k + 5]
    summary_block = global_block(ce_t, ce_r, valid)[:, None, :]
    features[:, :-1, 7 * k + 7 :] = torch.where(valid[..., None], summary_block, 0.0)
    mask = torch.zeros(n_texts, length, dtype=torch.bool)
    mask[:, :-1] = valid
    return features, mask


def rank_feature_columns(k: int) -> list[int]:
    """Indices of the lr(rank) features (truth 2-3, head 4j+6 and 4j+7, tail 4k+3j+6): integer-exact."""
    head = [4 + 4 * j + offset for j in range(k) for offset in (2, 3)]
    return [2, 3, *head, *(4 + 4 * k + 3 * j + 2 for j in range(k))]


def check_naive_matches() -> float:
    """The naive features equal ltmia's on a small case with many tied (bfloat16) logits; max |diff|."""
    generator = torch.Generator().manual_seed(0)
    z_t, z_r = (torch.randn(2, 3, 40, 600, generator=generator) * 3).to(torch.bfloat16)
    ids = torch.randint(0, 600, (3, 40), generator=generator)
    attention = torch.ones(3, 40, dtype=torch.long)
    attention[1, 25:] = 0
    expected, mask, _ = lt_features_and_stats(z_t, z_r, ids, attention, k=20, chunk_positions=7)
    naive, naive_mask = naive_features(z_t, z_r, ids, attention, k=20, chunk_positions=11)
    assert torch.equal(mask, naive_mask)
    torch.testing.assert_close(naive, expected, rtol=0, atol=1e-5)
    assert torch.equal(naive[..., rank_feature_columns(20)], expected[..., rank_feature_columns(20)])
    return float((naive - expected).abs().max())


# ----------------------------------------------------------------------------------------- one config


def run_config(name: str, args: argparse.Namespace) -> dict[str, object]:
    config = CONFIGS[name]
    torch.set_num_threads(args.threads)
    n_texts = args.texts or config["texts"]
    docs, texts = corpus_texts(n_texts)
    tokenizer = train_tokenizer(docs, vocab_size=TOKENIZER_VOCAB)
    vocab = config["vocab"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    target, reference = (
        build_model(config["arch"], vocab, eos, pad, config["size"], seed=seed).eval() for seed in (0, 1)
    )
    budget = args.memory_budgets_mib[0] * 2**20
    step = sub_batch_size(args.batch_size, SEQ_LEN, vocab, budget)
    batches = [
        encode(tokenizer, texts[start : start + args.batch_size])
        for start in range(0, len(texts), args.batch_size)
    ]
    sub_batches = [
        (ids[i : i + step], mask[i : i + step]) for ids, mask in batches for i in range(0, len(ids), step)
    ]

    @torch.no_grad()
    def forward() -> None:
        for ids, mask in sub_batches:
            for model in (target, reference):
                model(input_ids=ids, attention_mask=mask)

    def extract_and_score(memory_budget: int = budget) -> None:
        signals = extract(
            target, reference, tokenizer, texts, batch_size=args.batch_size, memory_budget_bytes=memory_budget
        )
        for attack in ATTACKS.names():
            score(attack, signals.stats, texts)

    valid_positions = int(sum(mask[:, 1:].sum() for _, mask in batches))
    result: dict[str, object] = {
        "arch": config["arch"],
        "size": vars(config["size"]),
        "vocab": vocab,
        "params_each": count_parameters(target),
        "texts": len(texts),
        "batch_size": args.batch_size,
        "seq_len": SEQ_LEN,
        "valid_positions": valid_positions,
        "sub_batch": step,
        "memory_budget_mib": args.memory_budgets_mib[0],
        "threads": torch.get_num_threads(),
    }
    # memory first, each phase's first run in this process (no warm-up has raised the baseline yet)
    memory = {"forward": peak_extra_mib(forward)}
    for budget_mib in args.memory_budgets_mib:
        texts_per_pass = min(len(texts), sub_batch_size(args.batch_size, SEQ_LEN, vocab, budget_mib * 2**20))
        memory[f"extract_budget_{budget_mib}mib"] = {
            "sub_batch": texts_per_pass,
            "logits_mib": round(2 * texts_per_pass * SEQ_LEN * vocab * 4 / 2**20, 1),  # both models'
            **peak_extra_mib(lambda b=budget_mib: extract_and_score(b * 2**20)),
        }
    result["memory"] = memory

    forward(), extract_and_score()  # warm-up
    forward_runs, extract_runs = [], []
    for _ in range(args.repeats):  # interleaved, so that drifting load hits both alike
        forward_runs += timed(forward, 1, args.max_wait)
        extract_runs += timed(extract_and_score, 1, args.max_wait)
    a, b = summary(forward_runs), summary(extract_runs)
    logits = 2 * valid_positions * vocab
    result["a_forward"], result["b_extract_and_score"] = a, b
    result["ratio_b_over_a"] = {
        "median": round(b["median_s"] / a["median_s"], 3),
        "fastest": round(b["fastest_s"] / a["fastest_s"], 3),
    }
    result["ns_per_logit"] = {  # logits = 2 models x valid positions x V
        "forward": round(a["fastest_s"] / logits * 1e9, 2),
        "extract_minus_forward": round((b["fastest_s"] - a["fastest_s"]) / logits * 1e9, 2),
    }
    result["c_features_only"] = features_comparison(target, reference, sub_batches, args, budget)
    result["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


@torch.no_grad()
def features_comparison(target, reference, sub_batches, args, budget: int) -> dict[str, object]:
    """ltmia's features vs the naive ones, on the logits of the first ``--naive-sub-batches`` sub-batches."""
    chosen = sub_batches[: args.naive_sub_batches]
    logits = [
        (
            target(input_ids=ids, attention_mask=mask).logits,
            reference(input_ids=ids, attention_mask=mask).logits,
        )
        for ids, mask in chosen
    ]

    def ours() -> list:
        return [
            lt_features_and_stats(z_t, z_r, ids, mask, memory_budget_bytes=budget // 2)[0]
            for (z_t, z_r), (ids, mask) in zip(logits, chosen, strict=True)
        ]

    def naive() -> list:
        return [
            naive_features(z_t, z_r, ids, mask)[0]
            for (z_t, z_r), (ids, mask) in zip(logits, chosen, strict=True)
        ]

    differences = [(x - y).abs() for x, y in zip(ours(), naive(), strict=True)]
    rank_columns = rank_feature_columns(20)
    ours_runs, naive_runs = [], []
    for _ in range(args.repeats):
        ours_runs += timed(ours, 1, args.max_wait)
        naive_runs += timed(naive, 1, args.max_wait)
    a, b = summary(ours_runs), summary(naive_runs)
    return {
        "texts": sum(ids.shape[0] for ids, _ in chosen),
        "max_abs_difference": max(float(d.max()) for d in differences),
        "max_abs_difference_rank_columns": max(float(d[..., rank_columns].max()) for d in differences),
        "ltmia": a,
        "naive_full_sort": b,
        "naive_over_ltmia": {
            "median": round(b["median_s"] / a["median_s"], 2),
            "fastest": round(b["fastest_s"] / a["fastest_s"], 2),
        },
    }


# --------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    heavy = {"deep_1b"}  # 10 GB of weights and minutes per pass at one thread: only when asked for
    parser.add_argument(
        "--configs", nargs="+", default=[c for c in CONFIGS if c not in heavy], choices=list(CONFIGS)
    )
    parser.add_argument("--texts", type=int, default=0, help="texts per config (0: 64 tiny, 16 large_v)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--large-vocab", type=int, default=128_000, help="V of the large_v config")
    parser.add_argument(
        "--memory-budgets-mib", type=int, nargs="+", default=[1024, 384, 4096], help="the first one is timed"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-sub-batches", type=int, default=1, help="sub-batches timed in (c)")
    parser.add_argument("--max-wait", type=float, default=5.0, help="seconds to wait for idle CPUs per run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    CONFIGS["large_v"]["vocab"] = args.large_vocab
    if args.child:  # one configuration, in its own process; the result on stdout's last line
        print(json.dumps(run_config(args.child, args)))
        return
    report: dict[str, object] = {
        "naive_check_max_abs_difference": check_naive_matches(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "configs": {},
    }
    for name in args.configs:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", name]
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = round(time.perf_counter() - started, 1)
        report["configs"][name] = result
        print(
            name, json.dumps({key: result[key] for key in ("ratio_b_over_a", "memory", "wall_s")}), flush=True
        )
    report["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
