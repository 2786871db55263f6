"""Extraction: a target's rows (or any rows) through target and reference -> a feature store (SPEC §4-5).

target directory -> its members and non-members, looked up by the SHA-256s its split record holds
(``target_rows``) -> models (``ltmia.models.load_models``) -> one forward pass of both per batch
(``ltmia.signals.extract``) -> whole shards written into the store's scratch directory, resumable per shard
(``ltmia.store`` reads and writes the store itself: its plan, shards, manifest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial as partial_call
from pathlib import Path
from typing import Any, cast

from torch import nn

from ltmia.artefacts import building, check_scratch, read_json, read_manifest, verify_artefact, write_json
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import Bos, Kind, filter_texts, text_hash
from ltmia.errors import InputError
from ltmia.models import adapter_base, load_models
from ltmia.signals import check_compatible, extract, output_width
from ltmia.sources import model_spec, source_record
from ltmia.store import (
    DTYPES,
    PAIR_SPLITS,
    PLAN_FILE,
    ROWS_FILE,
    Rows,
    StoreSettings,
    finish,
    finished_store,
    is_store,
    same_plan,
    shard_file,
    shard_ranges,
    store_plan,
    store_scratch,
    write_shard,
)

log = logging.getLogger(__name__)

OnTexts = Callable[[int, int], None]
"""Progress callback ``on_texts(done, total)``: texts in the store so far (finished shards included)."""


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
