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
shards. Extraction (``ltmia.extract`` fills a store; this module reads and writes one) is resumable:
shards are written whole into the scratch directory of ``ltmia.artefacts.building`` beside ``plan.json``
(everything the numbers depend on); a re-run with the same plan continues after the last whole shard, and
as shards start at fixed rows and are batched alike, the finished store is byte-identical to an
uninterrupted run (ltmia's checksum cache aside). Safetensors holds
no code (no pickle) and is read lazily, so stores larger than memory stream shard by shard.

Opening a store checks its files against the manifest's sizes and SHA-256s (``ltmia.artefacts.verify_files``:
hashing only what changed since the last check, everything under ``--verify``), so edited labels or a
damaged shard stop with one line instead of being scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ltmia.artefacts import (
    MANIFEST,
    atomic_path,
    file_sha256,
    read_json,
    read_manifest,
    remember_checked,
    verify_files,
    versions,
    write_json,
)
from ltmia.data import Bos, Kind, text_hash
from ltmia.errors import DamagedError, InputError, OutputExistsError
from ltmia.features import FEATURE_LAYOUT_VERSION, feature_dim
from ltmia.settings import StoreSettings
from ltmia.signals import Signals, concat_stats
from ltmia.tokenstats import TokenStats

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
