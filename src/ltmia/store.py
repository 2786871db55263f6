"""The feature store: one target's LT-MIA features and baseline token stats on disk (SPEC §4, §5).

A store is a directory (the ``save_pretrained`` idea of ``ltmia.artefacts``):

- ``rows.json``: per row (one text) the text, its SHA-256, label (1 member, 0 non-member, -1 unknown: an
  audit's candidates), split and pair index. The texts are kept because the zlib baseline reads them
  (SPEC §5) and audits show them; the store is the user's own artefact, as private as the corpus it came
  from.
- ``shard-00000.safetensors``, ...: for ``shard_size`` consecutive rows, ``features`` (n, L, 7k+14) float32
  or float16, ``mask`` (n, L) bool and the `TokenStats` arrays (n, L-1), float32 / bool.
- ``manifest.json``: models, source, settings, feature layout version, package versions, and each file's
  SHA-256 and row count.

A target's rows come split by split (train, val, test of SPEC §2), each pair as (member i, non-member i):
every split is a contiguous, class-balanced run of rows, so reading the test split touches only the last
shards. Extraction is resumable: shards are written whole into the scratch directory of
``ltmia.artefacts.building`` beside ``plan.json`` (everything the numbers depend on); a re-run with the same
plan continues after the last whole shard, and as shards start at fixed rows and are batched alike, the
finished store is byte-identical to an uninterrupted run (ltmia's checksum cache aside). Safetensors holds
no code (no pickle) and is read lazily, so stores larger than memory stream shard by shard.

Opening a store checks its files against the manifest's sizes and SHA-256s (``ltmia.artefacts.verify_files``:
hashing only what changed since the last check, everything under ``--verify``), so edited labels or a
damaged shard stop with one line instead of being scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import partial as partial_call
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ltmia.artefacts import (
    MANIFEST,
    atomic_path,
    building,
    check_scratch,
    file_sha256,
    read_json,
    read_manifest,
    remember_checked,
    verify_artefact,
    verify_files,
    versions,
    write_json,
)
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import SEQ_LEN, Bos, Kind, filter_texts, text_hash
from ltmia.device import resolve_device, resolve_precision
from ltmia.errors import DamagedError, InputError, OutputExistsError
from ltmia.features import FEATURE_LAYOUT_VERSION, feature_dim
from ltmia.models import adapter_base, check_same_tokenizer, load_causal_lm, load_tokenizer
from ltmia.signals import Signals, check_compatible, concat_stats, extract, output_width
from ltmia.sources import model_spec, source_record
from ltmia.tokenstats import MEMORY_BUDGET_BYTES, TokenStats

log = logging.getLogger(__name__)

STORE_ARTEFACT = "ltmia-store"
ROWS_FILE = "rows.json"
PLAN_FILE = "plan.json"
PAIR_SPLITS = ("train", "val", "test")  # SPEC §2 order; rows of a target store follow it
UNSPLIT = "all"  # the split of rows given without one
UNLABELLED = -1  # the label of a row whose membership is unknown (an audit's candidate texts)
DTYPES = {"float32": torch.float32, "float16": torch.float16}
STAT_NAMES = tuple(f.name for f in fields(TokenStats))
REWRITE = "extract it again (ltmia extract --overwrite; an audit's store: audit into a new --out)"

OnTexts = Callable[[int, int], None]
"""Progress callback ``on_texts(done, total)``: texts in the store so far (finished shards included)."""


@dataclass
class StoreSettings:
    """How to extract. k and L are SPEC §4's; float16 halves the features' size (stats stay float32);
    ``precision`` bf16 runs the models under bf16 autocast with a float32 LM head (``ltmia.signals``).

    ``memory_budget_bytes`` bounds extraction's memory beyond the models (``ltmia.signals.extract``). It
    changes how the work is split, not the numbers, so it is not part of a store's plan: a store can be
    resumed or reused under another budget.
    """

    k: int = 20
    dtype: str = "float32"
    shard_size: int = 1024
    batch_size: int = 16
    seq_len: int = SEQ_LEN
    precision: str = "fp32"  # the models' forward passes (``ltmia.device``); "auto" is resolved here
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.precision)
        if self.dtype not in DTYPES:
            raise InputError(f"dtype {self.dtype!r} is not one of: {', '.join(DTYPES)}")
        if min(self.k, self.shard_size, self.batch_size) < 1 or self.seq_len < 2:
            raise InputError("k, shard size and batch size must be at least 1 and the sequence length 2")
        if self.memory_budget_bytes < 1:
            raise InputError(
                f"the memory budget must be a positive number of bytes, got {self.memory_budget_bytes}"
            )

    def plan(self) -> dict:
        """The settings a store's numbers depend on (all but the memory budget)."""
        return {key: value for key, value in asdict(self).items() if key != "memory_budget_bytes"}


@dataclass
class Rows:
    """The N texts of a store and what each is: label (1 member, 0 non-member, -1 unknown), split name,
    pair index.

    Texts and labels are enough: ``split`` then defaults to "all" for every row and ``pair`` to -1 (none).
    """

    texts: list[str]
    labels: list[int]
    split: list[str] | None = None
    pair: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        self.labels = [int(label) for label in self.labels]
        self.split = [UNSPLIT] * n if self.split is None else [str(name) for name in self.split]
        self.pair = [-1] * n if self.pair is None else [int(i) for i in self.pair]
        if n == 0 or not all(isinstance(text, str) and text for text in self.texts):
            raise InputError("a store needs at least one text, and every text must be a non-empty string")
        if not len(self.labels) == len(self.split) == len(self.pair) == n:
            raise InputError(f"{n} texts need as many labels, split names and pair indices")
        if set(self.labels) - {0, 1, UNLABELLED}:
            raise InputError("labels must be 1 (member), 0 (non-member) or -1 (unknown)")

    def record(self) -> dict[str, Any]:
        """The JSON columns of ``rows.json``."""
        hashes = [text_hash(text) for text in self.texts]
        return {
            "text": self.texts,
            "sha256": hashes,
            "label": self.labels,
            "split": self.split,
            "pair": self.pair,
        }


def target_record(target: Path) -> tuple[dict, dict]:
    """A target directory's manifest and split record (``splits.json``); anything else is an InputError."""
    manifest = read_manifest(target)
    if (
        manifest is None
        or manifest.get("artefact") != "ltmia-target"
        or not (target / "splits.json").exists()
    ):
        raise InputError(f"{target} is not a target directory; write one with ltmia finetune")
    fix = "the target is damaged: fine-tune it again (ltmia finetune --overwrite)"
    verify_artefact(target, manifest, fix)
    return manifest, cast(dict, read_json(target / "splits.json", fix))


def target_rows(target: Path, corpus: str | None = None, column: str | None = None) -> Rows:
    """The members and non-members of a target, found by the SHA-256s its ``splits.json`` records (SPEC §2).

    A target records only hashes, so each text is looked up by hash in the corpus its manifest names (or
    ``corpus``): a text changed or gone since fine-tuning is an InputError, never a silently different text.
    Looking up by hash rather than re-running ``make_splits`` also survives a corpus that grew or reordered.
    """
    manifest, record = target_record(Path(target))
    spec = corpus or manifest["source"].get("corpus")
    if spec is None:
        raise InputError(f"{target} records no corpus; name the one it was fine-tuned on with --corpus")
    source = get_corpus(spec, column=column, kind=manifest["kind"])
    by_hash = {text_hash(text): text for text in filter_texts(corpus_texts(source, pool="all"))}
    hashes = record["hashes"]
    missing = [h for h in hashes["members"] + hashes["non_members"] if h not in by_hash]
    if missing:
        raise InputError(
            f"{len(missing)} of the texts {target}/splits.json records are not in corpus {spec!r} (first: "
            f"sha256 {missing[0][:12]}...); pass the corpus (and --column) the target was fine-tuned on"
        )
    entries = [
        (by_hash[hashes[group][i]], label, name, i)
        for name in PAIR_SPLITS
        for i in record["pairs"][name]
        for label, group in ((1, "members"), (0, "non_members"))
    ]
    texts, labels, split, pair = (list(values) for values in zip(*entries, strict=True))
    return Rows(texts, labels, split, pair)


def split_counts(rows: Rows) -> dict[str, dict[str, int]]:
    """Members and non-members (and unlabelled rows, if any) per split name, in order of first appearance."""
    names = {1: "members", 0: "non_members", UNLABELLED: "unlabelled"}
    counts: dict[str, dict[str, int]] = {}
    for name, label in zip(cast(list[str], rows.split), rows.labels, strict=True):  # set by __post_init__
        entry = counts.setdefault(name, {"members": 0, "non_members": 0})
        entry[names[label]] = entry.get(names[label], 0) + 1
    return counts


def store_plan(
    rows: Rows, settings: StoreSettings, kind: Kind, models: dict, source: dict, bos: Bos = "never"
) -> dict:
    """Everything a store's bytes depend on (versions aside): equal plans give byte-identical stores."""
    fingerprint = hashlib.sha256(json.dumps(rows.record(), sort_keys=True).encode()).hexdigest()
    return {
        "artefact": STORE_ARTEFACT,
        "models": models,
        "source": source,
        "kind": kind,
        "bos": bos,
        **settings.plan(),
        "feature_dim": feature_dim(settings.k),
        "feature_layout_version": FEATURE_LAYOUT_VERSION,
        "n": len(rows.texts),
        "splits": split_counts(rows),
        "rows_fingerprint": fingerprint,
    }


def is_store(out: Path) -> bool:
    """Whether ``out`` is a finished feature store (of any plan)."""
    manifest = read_manifest(out) if Path(out).is_dir() else None
    return manifest is not None and manifest.get("artefact") == STORE_ARTEFACT


def finished_store(out: Path, plan: dict, overwrite: bool = False) -> bool:
    """Whether ``out`` is a finished store of ``plan`` (so it is reused). A store of another plan is
    refused, naming what differs; ``overwrite`` means neither: the store is extracted again."""
    if not is_store(out) or overwrite:
        return False
    manifest = cast(dict, read_manifest(out))  # is_store: there is one
    changed = [key for key in plan if manifest.get(key) != plan[key]]
    if changed:
        raise OutputExistsError(
            f"{out} is a store of other texts or settings ({', '.join(changed)} differ); "
            "choose another output directory, or pass --overwrite to replace it"
        )
    return True


def store_scratch(scratch: Path) -> bool:
    """Whether a scratch directory without a marker is an older ltmia's extraction (its ``plan.json``)."""
    try:
        return json.loads((scratch / PLAN_FILE).read_text()).get("artefact") == STORE_ARTEFACT
    except (OSError, ValueError, AttributeError):
        return False


def same_plan(scratch: Path, plan: dict) -> bool:
    """Whether a dead run's scratch directory was extracting ``plan`` (then its whole shards are kept)."""
    try:
        return json.loads((scratch / PLAN_FILE).read_text()) == plan
    except (OSError, ValueError):
        return False


def shard_file(index: int) -> str:
    """File name of shard ``index``; zero-padded so names sort in row order."""
    return f"shard-{index:05d}.safetensors"


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the shards of an n-row store."""
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def write_shard(path: Path, signals: Signals, dtype: torch.dtype) -> None:
    """One shard's arrays -> ``path`` through a temporary file and a rename, so a shard on disk is whole."""
    tensors = {
        "features": signals.features.to(dtype),
        "mask": signals.mask,
        **{name: getattr(signals.stats, name) for name in STAT_NAMES},
    }
    with atomic_path(path) as tmp:
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(tmp))


def batch_progress(on_texts: OnTexts, done: int, total: int) -> Callable[[int], None]:
    """An ``extract`` ``on_batch`` callback that reports the store's running text count to ``on_texts``."""

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        on_texts(done, total)

    return on_batch


def build_store(
    target: nn.Module,
    reference: nn.Module | None,
    tokenizer,
    rows: Rows,
    out: Path,
    settings: StoreSettings | None = None,
    *,
    kind: Kind = "text",
    bos: Bos = "never",
    models: dict | None = None,
    source: dict | None = None,
    on_texts: OnTexts | None = None,
    overwrite: bool = False,
) -> Path:
    """Rows through target and reference (``ltmia.signals.extract``; ``reference=None``: the LoRA target
    with adapters disabled) -> a store at ``out`` of (N, L, 7k+14) features, (N, L) mask and (N, L-1) stats.

    ``models`` and ``source`` (JSON-able) describe where models and texts came from, for the manifest;
    ``bos`` is the tokenisation the target was trained with. A finished store of the same plan is returned
    as is (``overwrite``: a finished store is replaced); an interrupted one is continued.
    """
    out, settings = Path(out), settings or StoreSettings()
    plan = store_plan(rows, settings, kind, models or {}, source or {}, bos)
    if finished_store(out, plan, overwrite):
        log.info("%s is a finished store; skipping", out)
        return out
    check_compatible(target, reference, tokenizer)
    if settings.k >= output_width(target):
        raise InputError(
            f"k={settings.k} needs a vocabulary larger than k; the models have {output_width(target)}"
        )
    resume = partial_call(same_plan, plan=plan)
    replace = overwrite and is_store(out)
    with building(out, what="store", replace=replace, resume=resume, legacy=store_scratch) as partial:
        write_json(partial / PLAN_FILE, plan)
        write_json(partial / ROWS_FILE, rows.record())
        write_shards(target, reference, tokenizer, rows, partial, settings, kind, bos, on_texts)
        finish(partial, plan, shard_ranges(len(rows.texts), settings.shard_size))
    return out


def write_shards(
    target: nn.Module,
    reference: nn.Module | None,
    tokenizer,
    rows: Rows,
    partial: Path,
    settings: StoreSettings,
    kind: Kind,
    bos: Bos,
    on_texts: OnTexts | None,
) -> None:
    """Every shard not yet in ``partial`` (a resumed run keeps the whole ones), in row order."""
    options: dict[str, Any] = dict(
        kind=kind,
        k=settings.k,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
        bos=bos,
        precision=settings.precision,
        memory_budget_bytes=settings.memory_budget_bytes,
    )
    signals_of = partial_call(extract, target, reference, tokenizer, **options)
    n, ranges = len(rows.texts), shard_ranges(len(rows.texts), settings.shard_size)
    for index, (start, stop) in enumerate(ranges):
        path = partial / shard_file(index)
        if not path.exists():
            on_batch = batch_progress(on_texts, start, n) if on_texts else None
            write_shard(
                path, signals_of(texts=rows.texts[start:stop], on_batch=on_batch), DTYPES[settings.dtype]
            )
        elif on_texts is not None:
            on_texts(stop, n)


def file_entry(directory: Path, name: str, rows: int) -> dict:
    """A manifest entry of one store file: its name, rows, size and SHA-256."""
    path = directory / name
    return {"file": name, "rows": rows, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def finish(partial: Path, plan: dict, ranges: list[tuple[int, int]]) -> None:
    """Write the manifest (plan, each file's size and checksum, versions) last; ``building`` renames."""
    shards = [file_entry(partial, shard_file(i), stop - start) for i, (start, stop) in enumerate(ranges)]
    rows_file = file_entry(partial, ROWS_FILE, plan["n"])
    (partial / PLAN_FILE).unlink()
    write_json(partial / MANIFEST, {**plan, "rows_file": rows_file, "shards": shards, "versions": versions()})
    remember_checked(partial, [rows_file, *shards])


def extract_target(
    target: Path,
    out: Path,
    settings: StoreSettings | None = None,
    *,
    reference: str | None = None,
    corpus: str | None = None,
    column: str | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
    on_texts: OnTexts | None = None,
    overwrite: bool = False,
) -> Path:
    """The store of a target directory: its members and non-members (``target_rows``), SPEC §4-5 signals.

    The reference defaults to the base model the target's manifest records; for a LoRA target it is the
    target with adapters disabled (SPEC §3), so no second model is loaded. ``corpus`` / ``column`` name the
    fine-tuning corpus when the recorded name no longer resolves (a moved file, a table column).
    ``overwrite`` replaces a finished store at ``out`` (by default one of the same plan is reused and one
    of another plan refused).
    """
    target, out, settings = Path(target).resolve(), Path(out), settings or StoreSettings()
    manifest, _ = target_record(target)
    rows = target_rows(target, corpus, column)
    lora_base = adapter_base(str(target)) if reference is None else None
    reference = None if lora_base else model_spec(reference or manifest["base"])
    models: dict[str, Any] = {
        "target": str(target),
        "reference": lora_base or reference,
        "reference_adapters_disabled": lora_base is not None,
        "tokenizer": str(target),
    }
    reference_source = source_record(cast(str, lora_base or reference))  # one of them is set
    if reference_source:
        models["reference_source"] = reference_source
    overrides = {"corpus": corpus, "column": column}
    source = {**manifest["source"], **{key: value for key, value in overrides.items() if value}}
    bos = manifest.get("bos", "never")  # targets written before the setting existed used SPEC §2's
    if finished_store(out, store_plan(rows, settings, manifest["kind"], models, source, bos), overwrite):
        return out
    check_scratch(out, legacy=store_scratch)
    target_model, reference_model, tokenizer = load_models(target, reference, device, trust_remote_code)
    return build_store(
        target_model,
        reference_model,
        tokenizer,
        rows,
        out,
        settings,
        kind=manifest["kind"],
        bos=bos,
        models=models,
        source=source,
        on_texts=on_texts,
        overwrite=overwrite,
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


class Store:
    """A finished feature store, read lazily: row metadata in memory, arrays one shard at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path) if self.path.is_dir() else None
        if manifest is None or manifest.get("artefact") != STORE_ARTEFACT:
            raise InputError(f"{path} is not a finished feature store; write one with ltmia extract")
        self.manifest = manifest
        verify_files(self.path, self._entries(), REWRITE)
        record = cast(dict, read_json(self.path / ROWS_FILE, REWRITE))
        self.labels = np.asarray(record["label"], dtype=np.int64)  # (N,) 1 member, 0 non-member, -1 unknown
        self.split = np.asarray(record["split"])  # (N,) split names
        self.pair = np.asarray(record["pair"], dtype=np.int64)  # (N,) pair index, -1 for none
        self.hashes: list[str] = record["sha256"]
        self._texts: list[str] = record["text"]

    def _entries(self) -> list[dict]:
        """The manifest's entries of the rows file (the first stores recorded none) and of the shards."""
        rows_file = self.manifest.get("rows_file")
        return [*([rows_file] if rows_file else []), *self.manifest["shards"]]

    @property
    def n(self) -> int:
        """Number of rows (texts)."""
        return len(self.labels)

    def rows(self, split: str | None = None) -> np.ndarray:
        """Ascending row indices of ``split`` (all rows for None); a split the store lacks: InputError."""
        if split is None:
            return np.arange(self.n)
        rows = np.flatnonzero(self.split == split)
        if rows.size == 0:
            present = ", ".join(dict.fromkeys(self.split.tolist()))
            raise InputError(f"{self.path} has no {split!r} rows; its splits are: {present}")
        return rows

    def texts(self, split: str | None = None) -> list[str]:
        """The texts of ``split`` in row order (the zlib baseline reads them, SPEC §5)."""
        return [self._texts[i] for i in self.rows(split)]

    def iter_shards(self, split: str | None = None) -> Iterator[dict[str, Tensor]]:
        """Per shard holding rows of ``split``, those rows: ``features`` (n, L, d), ``mask`` (n, L), the
        `TokenStats` arrays (n, L-1), ``label`` (n,) and ``row`` (n,) store row indices.

        Shards are opened with ``safe_open`` (memory-mapped) and only the span of wanted rows is read, so
        a store larger than memory streams.
        """
        wanted = self.rows(split)
        start = 0
        for shard in self.manifest["shards"]:
            stop = start + shard["rows"]
            rows = wanted[(wanted >= start) & (wanted < stop)]
            if rows.size:
                yield {
                    **self._read_rows(shard["file"], rows - start),
                    "label": torch.from_numpy(self.labels[rows]),
                    "row": torch.from_numpy(rows),
                }
            start = stop

    def _read_rows(self, file: str, local: np.ndarray) -> dict[str, Tensor]:
        """Arrays of ascending shard-local rows ``local``: the span they cover, then those rows of it."""
        lo, hi = int(local[0]), int(local[-1]) + 1
        try:
            with safe_open(self.path / file, framework="pt") as arrays:
                names = arrays.keys()  # a safe_open handle is not iterable itself
                span = {name: arrays.get_slice(name)[lo:hi] for name in names}
        except (SafetensorError, OSError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DamagedError(f"{self.path / file} cannot be read ({reason}); {REWRITE}") from None
        if hi - lo == local.size:
            return span
        index = torch.from_numpy(local - lo)
        return {name: tensor[index] for name, tensor in span.items()}

    def stats(self, split: str | None = None) -> TokenStats:
        """The baselines' token stats (n, L-1) of ``split``, in row order."""
        shards = self.iter_shards(split)
        return concat_stats([TokenStats(**{name: shard[name] for name in STAT_NAMES}) for shard in shards])

    def features(self, split: str | None = None) -> tuple[Tensor, Tensor]:
        """Features (n, L, 7k+14) in the stored dtype and mask (n, L) of ``split``, in row order."""
        shards = list(self.iter_shards(split))
        return torch.cat([s["features"] for s in shards]), torch.cat([s["mask"] for s in shards])

    def verify(self) -> None:
        """Recompute every file's SHA-256 (opening a store hashes only files that changed since their last
        check); a file that differs from the manifest's is a ``DamagedError``."""
        verify_files(self.path, self._entries(), REWRITE, full=True)
