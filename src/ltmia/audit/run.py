"""The audit recipe: a user's fine-tuned model, its base and candidate texts -> scores, explanations, report.

classifier (shipped by default) -> reference and tokenizer checks -> candidates -> feature store (the
same one-pass extraction as the study, resumable per shard) -> LT-MIA and every baseline -> occlusion
explanations of the top texts -> ``scores.csv`` / ``scores.json`` / ``report.html`` (+ metrics and ROC when
labels are given). With known non-members (``ltmia.audit.nonmembers``) they go through the same extraction,
after the candidates, and turn the scores into p-values, a selection at an error rate and a set verdict.

Everything cheap is checked before anything expensive: the classifier's feature layout, the reference's
tokenizer, the texts; only then are the models loaded.

Scores are scores, not probabilities (``SCORE_NOTE``): the report says so and why.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from ltmia.artefacts import (
    MARKER,
    claim_output,
    read_manifest,
    record_output,
    versions,
    write_json,
    write_text,
)
from ltmia.audit.explain import explain
from ltmia.audit.html import write_report
from ltmia.audit.inputs import Candidates, candidates, read_labels, read_texts
from ltmia.audit.nonmembers import Evidence, EvidenceSettings, evidence, read_non_members, take
from ltmia.audit.result import AuditResult
from ltmia.classifier import LTMIA
from ltmia.classifier.checkpoint import classifier_dir
from ltmia.corpora import check_kind
from ltmia.data import Kind, resolve_bos
from ltmia.errors import InputError
from ltmia.evaluation import (
    LT_MIA,
    Scored,
    baseline_scores,
    lt_mia_scores,
    merge,
    write_results,
)
from ltmia.extract import build_store
from ltmia.features import FEATURE_LAYOUT_VERSION, feature_dim
from ltmia.models import adapter_base, load_models, load_tokenizer
from ltmia.settings import default
from ltmia.settings.base import PrecisionSetting
from ltmia.sources import default_bos, model_spec
from ltmia.store import Rows, Store, StoreSettings

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
STORE_DIR = "store"
SCORE_NOTE = (
    "LT-MIA scores are the classifier's sigmoid output, between 0 and 1, and rank texts: a higher score "
    "means more member-like. They are not calibrated probabilities of membership. A probability depends "
    "on the share of members among the candidates (unknown to ltmia) and on how the target was trained "
    "(model size, recipe, epochs), which shifts every score; calibrating on ltmia's own study data would "
    "print numbers that look exact and are not. Read them by rank, or against the ROC when labels are given."
)


@dataclass
class AuditSettings:
    """How to audit. ``classifier`` None means the classifier shipped with ltmia; ``explain`` is how many
    top-scoring texts get per-token explanations (0: none). ``bos`` None: what an ltmia target recorded,
    else what a packaged base needs, else SPEC §2's "never" (``ltmia.data.resolve_bos``); ``precision``
    as in ``ltmia.device``."""

    classifier: Path | None = None
    kind: Kind = "text"
    bos: str | None = None
    precision: str = default(StoreSettings, "precision")
    explain: int = 20
    batch_size: int = default(StoreSettings, "batch_size")
    shard_size: int = 256
    memory_budget_bytes: int = default(StoreSettings, "memory_budget_bytes")
    device: str = "auto"
    trust_remote_code: bool = False
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)

    def __post_init__(self) -> None:
        check_kind(self.kind)


def load_audit_classifier(path: Path | None) -> LTMIA:
    """The classifier (shipped by default), refused unless it reads the features this ltmia extracts."""
    path = classifier_dir(path)
    classifier = LTMIA.load(path)
    record = classifier.record_
    if record["feature_layout_version"] != FEATURE_LAYOUT_VERSION or record["feature_dim"] != feature_dim(
        record["k"]
    ):
        raise InputError(
            f"classifier {path} reads feature layout v{record['feature_layout_version']} "
            f"(D={record['feature_dim']}); this ltmia extracts v{FEATURE_LAYOUT_VERSION} "
            f"(D={feature_dim(record['k'])}); use the shipped classifier or retrain one with ltmia train"
        )
    return classifier


def resolve_reference(target: str, reference: str | None) -> tuple[str | None, dict]:
    """The reference to load (None: the LoRA target with adapters disabled) and how it was chosen."""
    if reference is not None:
        return model_spec(reference), {
            "reference": model_spec(reference),
            "reference_adapters_disabled": False,
        }
    base = adapter_base(target)
    if base is not None:
        return None, {"reference": base, "reference_adapters_disabled": True}
    manifest = read_manifest(Path(target)) if Path(target).is_dir() else None
    if manifest and manifest.get("artefact") == "ltmia-target":
        return manifest["base"], {"reference": manifest["base"], "reference_adapters_disabled": False}
    raise InputError(
        f"{target} is neither a LoRA adapter nor an ltmia target, so its base is unknown; "
        "pass --reference (the model it was fine-tuned from)"
    )


def target_bos(target: str, base: str) -> str:
    """The BOS setting an ltmia target was fine-tuned with, else what a packaged base needs, else never."""
    manifest = read_manifest(Path(target)) if Path(target).is_dir() else None
    if manifest and manifest.get("artefact") == "ltmia-target":
        return manifest.get("bos", "never")
    return default_bos(base) or "never"


AUDIT = "ltmia audit"
"""What ``claim_output`` records an audit's output directory as."""
AUDIT_FILES = (
    "scores.csv",
    "scores.json",
    "explanations.json",
    "non_members.json",
    "report.html",
    AUDIT_FILE,
    *(f"metrics{suffix}" for suffix in (".json", ".md", "-roc.png")),
)


def legacy_audit(out: Path) -> list[str] | None:
    """An audit written (or begun) before ltmia recorded its files: its ``audit.json`` says so, or it holds
    ltmia's store, finished (a manifest) or begun (a scratch directory with ltmia's marker); None if not."""
    try:
        record = json.loads((out / AUDIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    ours = isinstance(record, dict) and record.get("artefact") == "ltmia-audit"
    if (
        ours
        or (out / STORE_DIR / "manifest.json").is_file()
        or (out / f"{STORE_DIR}.partial" / MARKER).is_file()
    ):
        return list(AUDIT_FILES)
    return None


def check_output(out: Path, create: bool = False) -> None:
    """``out`` may be new, empty or an earlier audit (resumed); anything else is the user's, refused.
    ``create``: make it and record it as the audit's (``claim_output``), once the cheap checks passed."""
    fix = "choose another --out directory"
    before = claim_output(out, AUDIT, fix, legacy_audit, create=create)
    if create and not set(AUDIT_FILES) <= set(before):
        record_output(out, AUDIT, [*before, *AUDIT_FILES])


def audit(
    target: str,
    candidates: Candidates,
    out: Path,
    *,
    reference: str | None = None,
    settings: AuditSettings | None = None,
    tokenizer=None,
    on_texts: Callable[[int, int], None] | None = None,
    non_members: Candidates | None = None,
) -> AuditResult:
    """Score ``candidates`` against ``target`` (and its reference) and write the audit to ``out``.

    ``tokenizer`` is the target's (``load_tokenizer``), loaded here when not given. ``non_members``: texts
    known not to be trained on (``ltmia.audit.nonmembers.read_non_members``), scored in the same store after
    the candidates. Re-running with the same texts and settings continues an interrupted extraction and
    reuses a finished one.
    """
    started = time.perf_counter()
    settings, out = settings or AuditSettings(), Path(out)
    check_output(out)
    classifier = load_audit_classifier(settings.classifier)
    reference_spec, models = resolve_reference(target, reference)
    tokenizer = tokenizer or load_tokenizer(target, settings.trust_remote_code)
    bos = resolve_bos(tokenizer, settings.bos or target_bos(target, reference_spec or models["reference"]))
    store_settings = StoreSettings(
        k=classifier.record_["k"],
        seq_len=classifier.record_["seq_len"],
        batch_size=settings.batch_size,
        shard_size=settings.shard_size,
        precision=cast(PrecisionSetting, settings.precision),
        memory_budget_bytes=settings.memory_budget_bytes,
    )
    check_output(out, create=True)
    store = Store(
        build_store(
            *load_models(target, reference_spec, settings.device, settings.trust_remote_code),
            store_rows(candidates, non_members),
            out / STORE_DIR,
            store_settings,
            kind=settings.kind,
            bos=bos,
            models={"target": model_spec(target), **models, "tokenizer": model_spec(target)},
            source=store_source(candidates, non_members),
            on_texts=on_texts,
        )
    )
    n1 = len(candidates.texts)
    everything = merge([baseline_scores(store, None), lt_mia_scores(classifier, store, None)])
    scored = take(everything, slice(0, n1))  # the candidates are the first n1 rows
    found = None
    if non_members is not None:
        overlap = len(set(candidates.texts) & set(non_members.texts))
        found = evidence(everything, n1, store.stats(), settings.evidence, overlap)
    order = np.argsort(-scored.scores[LT_MIA], kind="stable")
    top = [int(row) for row in order[: max(0, settings.explain)]]
    explanations = explain(classifier, store, top, tokenizer, settings.kind, bos)
    table = score_table(candidates, scored, order, found.columns if found else None)
    metrics = None
    if candidates.labelled:
        title = f"audit of {Path(target).name} ({n1} labelled texts)"
        metrics = write_results(scored, out, "metrics", title)
    record = audit_record(target, models, classifier, candidates, settings, store_settings, store, started)
    if found is not None and non_members is not None:
        found.record["non_member_texts"] = {
            "read": non_members.n_read,
            "scored": len(non_members.texts),
            **non_members.flag_counts(),
            "skipped": non_members.skipped,  # input positions of the rows without text, never scored
        }
        record = {"artefact": record.pop("artefact"), "evidence": found.record, **record}
    result = AuditResult(out, table, candidates.flag_counts(), explanations, metrics, record, found)
    write_outputs(result, non_members)
    return result


def audit_files(
    target: str,
    texts: str | Path,
    out: Path,
    *,
    reference: str | None = None,
    labels: Path | None = None,
    column: str | None = None,
    fmt: str | None = None,
    non_members: str | Path | None = None,
    settings: AuditSettings | None = None,
    on_texts: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """`audit` of texts in files, as ``ltmia audit`` runs it: candidates from ``texts`` (a file or ``-``,
    stdin; ``ltmia.audit.inputs.read_texts``), known ``labels`` (one per text) and known ``non_members``
    (``read_non_members``), read and flagged with the target's tokenizer before any model is loaded."""
    settings = settings or AuditSettings()
    raw = read_texts(texts, column, fmt)
    known = read_labels(labels, len(raw)) if labels is not None else None
    tokenizer = load_tokenizer(target, settings.trust_remote_code)
    found = candidates(raw, tokenizer, known)
    nulls = None
    if non_members is not None:
        nulls = read_non_members(non_members, tokenizer, column, fmt, texts_source=texts)
    return audit(
        target,
        found,
        out,
        reference=reference,
        settings=settings,
        tokenizer=tokenizer,
        on_texts=on_texts,
        non_members=nulls,
    )


def store_rows(candidates: Candidates, non_members: Candidates | None) -> Rows:
    """The store's rows: the candidates (split "all"), then the known non-members (label 0, split
    "non_members"). Without non-members the rows, hence the store, are exactly those of earlier audits."""
    if non_members is None:
        return Rows(candidates.texts, candidates.labels)
    n1, n0 = len(candidates.texts), len(non_members.texts)
    return Rows(
        candidates.texts + non_members.texts,
        candidates.labels + [0] * n0,
        split=["all"] * n1 + ["non_members"] * n0,
    )


def store_source(candidates: Candidates, non_members: Candidates | None) -> dict:
    """The store manifest's ``source``: what the texts are and how many were read."""
    source = {"audit": "candidate texts", "n_read": candidates.n_read}
    if non_members is not None:
        source.update(audit="candidate texts, then known non-members", non_members_read=non_members.n_read)
    return source


def score_table(
    candidates: Candidates, scored: Scored, order: np.ndarray, columns: dict[str, np.ndarray] | None = None
) -> list[dict]:
    """One dict per scored text, best LT-MIA score first: rank, input index, scores, the evidence
    ``columns`` ((n1,) each: p-values, q-value, selected) when there are known non-members, label, flags,
    text."""
    logits = scored.scores[LT_MIA]
    baselines = {name: values for name, values in scored.scores.items() if name != LT_MIA}
    columns = columns or {}
    return [
        {
            "rank": rank,
            "index": candidates.index[row],
            "lt_mia_score": float(1 / (1 + np.exp(-logits[row]))),
            "lt_mia_logit": float(logits[row]),
            **{name: float(values[row]) for name, values in baselines.items()},
            **{name: values[row].item() for name, values in columns.items()},
            "label": candidates.labels[row],
            "flags": candidates.flags[row],
            "text": candidates.texts[row],
        }
        for rank, row in enumerate(order.tolist(), start=1)
    ]


def audit_record(
    target: str,
    models: dict,
    classifier: LTMIA,
    candidates: Candidates,
    settings: AuditSettings,
    store_settings: StoreSettings,
    store: Store,
    started: float,
) -> dict:
    """What produced the audit: models, classifier, counts, settings, versions, the score note."""
    return {
        "artefact": "ltmia-audit",
        "target": model_spec(target),
        **models,
        "classifier": {
            "path": str(classifier.record_["path"]),
            "variant": classifier.variant,
            "study": study_of(Path(classifier.record_["path"])),
            "best_val_auc": classifier.best_val_auc_,
        },
        "texts": {
            "read": candidates.n_read,
            "scored": len(candidates.texts),
            "labelled": candidates.labelled,
            **candidates.flag_counts(),
            "skipped": candidates.skipped,  # input positions of the rows without text
        },
        "settings": {
            "kind": settings.kind,
            "bos": store.manifest["bos"],
            "precision": store_settings.precision,
            "k": store_settings.k,
            "seq_len": store_settings.seq_len,
            "explained": settings.explain,
            "device": settings.device,
        },
        "score_note": SCORE_NOTE,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions(),
    }


def study_of(classifier_dir: Path) -> dict | None:
    """The study that trained a classifier, when its directory records one (``study.json``)."""
    path = classifier_dir / "study.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_outputs(result: AuditResult, non_members: Candidates | None = None) -> None:
    """``scores.csv``, ``scores.json``, ``explanations.json``, ``report.html`` (with known non-members also
    ``non_members.json``, their scores) and ``audit.json`` (last; keys in reading order, evidence first)."""
    out = result.out
    write_text(out / "scores.csv", table_csv(result.table))
    write_json(out / "scores.json", result.table)
    write_json(out / "explanations.json", [e.to_json() for e in result.explanations])
    if result.evidence is not None and non_members is not None:
        write_json(out / "non_members.json", non_member_table(non_members, result.evidence))
    write_report(result, out / "report.html")
    write_text(out / AUDIT_FILE, json.dumps(result.record, indent=2))


def non_member_table(non_members: Candidates, found: Evidence) -> list[dict]:
    """One dict per known non-member, in input order: index, every attack's score, flags, text."""
    scores = found.non_member_scores
    return [
        {
            "index": index,
            **{name: float(values[i]) for name, values in scores.items()},
            "flags": non_members.flags[i],
            "text": non_members.texts[i],
        }
        for i, index in enumerate(non_members.index)
    ]


def table_csv(table: list[dict]) -> str:
    """The score table as CSV; flags joined by ``;``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for entry in table:
        writer.writerow({**entry, "flags": ";".join(entry["flags"])})
    return buffer.getvalue()
