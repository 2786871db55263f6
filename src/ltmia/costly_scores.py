"""Costly attacks on a store (``ltmia.attacks.costly``): their settings, what they cost, where their prefix
texts and reference counts come from, and one loaded model pair for all of them.

The one-pass baselines read a store alone; costly attacks also need the store's target and reference, which
its manifest names, and some need texts from outside the scored rows:

* **prefix source** (ReCaLL's non-member shots, Con-ReCall's member shots), ``prefix_source``:
  ``split:<name>`` draws ``shots`` texts of the needed label from another split of the store;
  ``corpus`` (non-members only) draws them from the target's corpus, and ``corpus:<spec>`` from any ltmia
  corpus, leaving out every text the target's split record names and every row of the store; ``auto``
  (default) is ``split:train`` (``split:val`` when scoring train) and, when all rows are scored,
  ``corpus`` for non-members; a member prefix then has no source and is an error. Shots are the first
  ``shots`` texts of a seeded order (``ltmia.data.seeded_order``), so they are the same on every machine.
* **reference corpus** (DC-PDD's token counts), ``reference_corpus``: any ltmia corpus (default: the
  target's own), all of its texts (a built-in's pretraining share included: it is what the zoo saw) except
  those the target's split record names and the store's rows.

`CostlyOptions` is the one typed settings object the CLI (``ltmia baselines --attacks``), the study config
(``[costly]``) and the Python API share.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ltmia.attacks import ATTACKS
from ltmia.attacks.costly import COSTLY_ATTACKS, Cost, costly_score
from ltmia.attacks.costly.dc_pdd import token_counts
from ltmia.attacks.costly.passes import Models
from ltmia.corpora import Pool, corpus_texts, get_corpus
from ltmia.data import filter_texts, seeded_order, text_hash
from ltmia.errors import InputError, UnknownNameError
from ltmia.evaluation import Scored, baseline_scores, merge, store_split
from ltmia.extract import target_record
from ltmia.models import load_models
from ltmia.settings.costly import CostlyOptions
from ltmia.store import Store
from ltmia.tokenstats import MEMORY_BUDGET_BYTES

log = logging.getLogger(__name__)

PREFIX_FIELDS = {"non_member_prefix": 0, "member_prefix": 1}  # settings field -> label of its shots


def split_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Attack names -> (one-pass names, costly names), each in the given order; an unknown name lists all."""
    if not names:
        raise InputError("name at least one attack (ltmia attacks lists them)")
    unknown = [name for name in names if name not in ATTACKS and name not in COSTLY_ATTACKS]
    if unknown:
        valid = ", ".join([*ATTACKS.names(), *COSTLY_ATTACKS.names()])
        raise UnknownNameError(f"unknown attack {unknown[0]!r}; choose from: {valid}")
    names = list(dict.fromkeys(names))
    return [n for n in names if n in ATTACKS], [n for n in names if n in COSTLY_ATTACKS]


def base_settings(name: str, options: CostlyOptions) -> Any:
    """An attack's settings from its defaults and ``options.params``, outside inputs not yet resolved."""
    return COSTLY_ATTACKS.get(name).make_settings(**options.params.get(name, {}))


def costs(names: Sequence[str], options: CostlyOptions, seq_len: int) -> dict[str, Cost]:
    """Each costly attack's `Cost` per text, with prefixes counted at ``options.shots`` full texts."""
    out = {}
    for name in names:
        settings = base_settings(name, options)
        shots = {f.name: ("",) * options.shots for f in fields(settings) if f.name in PREFIX_FIELDS}
        out[name] = COSTLY_ATTACKS.get(name).cost(replace(settings, **shots), seq_len)
    return out


def store_models(
    store: Store,
    device: str = "auto",
    batch_size: int = 8,
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES,
    trust_remote_code: bool = False,
) -> Models:
    """The target and reference a store was extracted from, with its encoding and precision (manifest)."""
    manifest = store.manifest
    recorded = manifest.get("models", {})
    if "target" not in recorded:
        raise InputError(f"{store.path} records no target model; costly attacks need the models")
    reference = None if recorded.get("reference_adapters_disabled") else recorded["reference"]
    target, reference_model, tokenizer = load_models(
        Path(recorded["target"]), reference, device, trust_remote_code
    )
    return Models(
        target,
        reference_model,
        tokenizer,
        kind=manifest["kind"],
        bos=manifest.get("bos", "never"),
        seq_len=manifest["seq_len"],
        batch_size=batch_size,
        precision=manifest["precision"],
        memory_budget_bytes=memory_budget_bytes,
    )


def split_record_hashes(store: Store) -> set[str] | None:
    """SHA-256s of every text the store's target split record names (members, validation, non-members);
    None when the store's target is not an ltmia target."""
    target = store.manifest.get("models", {}).get("target")
    if target is None:
        return None
    try:
        _, record = target_record(Path(target))
    except InputError:
        return None
    return {h for hashes in record["hashes"].values() for h in hashes}


def outside_texts(store: Store, spec: str | None, pool: Pool) -> list[str]:
    """Texts of corpus ``spec`` (default: the store's) that are neither in the target's split record nor
    rows of the store: texts the target was not fine-tuned on and the attack does not score."""
    source = store.manifest.get("source", {})
    spec = spec or source.get("corpus")
    if spec is None:
        raise InputError(f"{store.path} records no corpus; name one (--prefix-source corpus:<spec>)")
    column = source.get("column") if spec == source.get("corpus") else None
    named = split_record_hashes(store)
    if named is None and spec == source.get("corpus"):
        raise InputError(
            f"{store.path}'s target has no split record, so texts of its own corpus may be members; "
            "name another corpus"
        )
    excluded = (named or set()) | set(store.hashes)
    texts = filter_texts(corpus_texts(get_corpus(spec, column=column, kind=store.manifest["kind"]), pool))
    return [text for text in texts if text_hash(text) not in excluded]


def prefix_texts(store: Store, split: str | None, label: int, options: CostlyOptions) -> tuple[str, ...]:
    """``options.shots`` texts of ``label`` (1 member, 0 non-member) from the prefix source, none of them
    scored (module docstring)."""
    source = options.prefix_source
    if source == "auto":
        source = "corpus" if split is None else "split:val" if split == "train" else "split:train"
    kind = "member" if label == 1 else "non-member"
    if source.startswith("split:"):
        name = source.removeprefix("split:")
        if split is None or name == split:
            scored = "all rows" if split is None else f"the {split!r} rows"
            raise InputError(f"a {kind} prefix from split {name!r} would use {scored}, which are scored")
        labels = store.labels[store.rows(name)]
        candidates = [text for text, y in zip(store.texts(name), labels, strict=True) if y == label]
    elif label == 1:
        raise InputError(
            "a member prefix can only come from another split of the store (prefix source split:<name>); "
            "when all rows are scored there is none"
        )
    else:
        candidates = outside_texts(store, source.removeprefix("corpus").removeprefix(":") or None, "attack")
    if len(candidates) < options.shots:
        raise InputError(f"{len(candidates)} {kind} texts for a prefix of {options.shots} shots ({source})")
    order = seeded_order(candidates, options.seed)
    return tuple(candidates[i] for i in order[: options.shots])


def resolved_settings(
    name: str, store: Store, split: str | None, options: CostlyOptions, models: Models
) -> Any:
    """An attack's settings with its outside inputs (prefix shots, reference counts) filled in."""
    settings = base_settings(name, options)
    names = {f.name for f in fields(settings)}
    filled: dict[str, object] = {}
    for key, label in PREFIX_FIELDS.items():
        if key in names:
            filled[key] = prefix_texts(store, split, label, options)
    if "counts" in names:
        reference = outside_texts(store, options.reference_corpus, "all")
        if not reference:
            raise InputError("the reference corpus has no text outside the target's splits and the store")
        log.info("dc_pdd: counting tokens of %d reference texts", len(reference))
        filled["counts"] = token_counts(models.tokenizer, reference)
    return replace(settings, **filled)


def costly_scores(
    store: Store, split: str | None, names: Sequence[str], options: CostlyOptions, models: Models
) -> Scored:
    """Every named costly attack on one split of a store ("all" or None: every row), with one model pair."""
    split = store_split(split)
    rows = store.rows(split)
    texts = store.texts(split)
    scores = {}
    for name in names:
        settings = resolved_settings(name, store, split, options, models)
        scores[name] = costly_score(name, models, texts, settings)
    return Scored(str(store.path), store.labels[rows], scores, rows)


def parse_param(assignment: str) -> tuple[str, str, object]:
    """``attack.key=value`` (value as JSON where it parses, else a string) -> (attack, key, value)."""
    target, sep, raw = assignment.partition("=")
    name, dot, key = target.partition(".")
    if not (sep and dot and name and key):
        raise InputError(f"--param takes attack.key=value, got {assignment!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, key, value


def parse_params(assignments: Sequence[str]) -> dict[str, dict]:
    """``--param`` values (``attack.key=value``, repeatable) -> {attack: {key: value}}, the ``params`` of
    `CostlyOptions`."""
    params: dict[str, dict] = {}
    for name, key, value in map(parse_param, assignments):
        params.setdefault(name, {})[key] = value
    return params


def attack_scores(
    store: Store,
    split: str | None,
    names: Sequence[str],
    options: CostlyOptions,
    *,
    device: str = "auto",
    trust_remote_code: bool = False,
    on_costly: Callable[[list[str], int], None] | None = None,
) -> Scored:
    """The named attacks, one-pass and costly, on one split of a store (``ltmia baselines --attacks``).

    One-pass attacks read the store; costly ones load its model pair once, after ``on_costly(costly names,
    texts to score)``, where a caller shows what they will cost before anything is loaded.
    """
    one_pass, costly = split_names(names)
    parts = [baseline_scores(store, split, one_pass)] if one_pass else []
    if costly:
        if on_costly is not None:
            on_costly(costly, len(store.rows(store_split(split))))
        models = store_models(store, device, options.batch_size, trust_remote_code=trust_remote_code)
        parts.append(costly_scores(store, split, costly, options, models))
    return merge(parts)
