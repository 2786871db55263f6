"""The audit's ``report.html``: one self-contained page (inline CSS, images as data URIs, no script, nothing
fetched), so it opens offline and can be mailed or archived as one file.

Sections, each with a stable id: evidence against known non-members (first, when they were given), summary,
how to read the scores, score distribution, metrics and ROC (with labels), top texts with per-token heatmaps,
every score, settings and versions. The candidates are untrusted input, so the page is a Jinja2 template
(``templates/report.html.j2``) with autoescape on: every value is HTML-escaped unless marked ``Markup``,
which only the metrics table is (``ltmia.evaluation.render`` escapes its cells). This module prepares plain
values (numbers, strings, PNG bytes as base64); the markup lives in the template.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from matplotlib.figure import Figure

from ltmia.artefacts import write_text
from ltmia.audit.explain import Explanation
from ltmia.audit.result import AuditResult
from ltmia.evaluation import Evaluation
from ltmia.evaluation import render as render_table

MAX_TABLE_ROWS = 1000
PREVIEW_CHARS = 160
TEMPLATE = "report.html.j2"


def environment() -> Environment:
    """The templates' environment: autoescape always on (whatever a template's name), and a missing value
    is an error rather than an empty string."""
    env = Environment(
        loader=PackageLoader("ltmia.audit", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["truncate_preview"] = preview
    return env


def write_report(result: AuditResult, path: Path) -> Path:
    """Render ``result`` as ``path`` (written through a temporary file and a rename)."""
    write_text(path, render(result))
    return path


def render(result: AuditResult) -> str:
    """The whole page as a string."""
    record = result.record
    metrics = None
    if result.metrics is not None:
        roc = (result.out / "metrics-roc.png").read_bytes()
        metrics = {"table": metrics_html(result.metrics), "roc": data_uri(roc)}
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            title=f"ltmia audit of {Path(record['target']).name}",
            record=record,
            evidence=evidence(record) if "evidence" in record else None,
            summary=summary(result),
            distribution=data_uri(distribution_png(result)),
            metrics=metrics,
            top_texts=top_texts(result),
            scores=score_table(result.table, record.get("evidence")),
            settings=json.dumps(record, indent=2),
        )
    )


def data_uri(png: bytes) -> str:
    """A PNG's base64 text for a data URI, so the page needs no other file."""
    return base64.b64encode(png).decode()


def skipped_note(skipped: list[int]) -> str:
    """Rows without text, by input position, as a note: "; 2 rows without text skipped (input #3, #7)"
    (nothing when there are none)."""
    if not skipped:
        return ""
    shown = ", #".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
    return f"; {len(skipped)} row{'s' * (len(skipped) > 1)} without text skipped (input #{shown})"


def preview(text: str) -> str:
    """The first ``PREVIEW_CHARS`` characters of a text (scores.csv has it whole)."""
    return text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")


def summary(result: AuditResult) -> list[tuple[str, str]]:
    """Models, classifier and what happened to the texts, as (name, value) rows."""
    record, texts = result.record, result.record["texts"]
    reference = record["reference"] + (
        " (adapters disabled)" if record["reference_adapters_disabled"] else ""
    )
    flagged = ", ".join(f"{texts.get(flag, 0)} {flag}" for flag in ("short", "truncated", "duplicate"))
    return [
        ("target", record["target"]),
        ("reference", reference),
        ("classifier", f"{record['classifier']['path']} ({record['classifier']['variant']})"),
        ("texts", f"{texts['read']} read, {texts['scored']} scored, {texts['skipped_empty']} empty skipped"),
        ("flagged (scored)", flagged),
        ("labels", "given: metrics below" if texts["labelled"] else "none (scores only)"),
        ("took", f"{record['seconds']} s"),
    ]


def distribution_png(result: AuditResult) -> bytes:
    """Histogram of LT-MIA scores; members and non-members apart when labels are known, the known
    non-members beside the candidates when they were given."""
    table = result.table
    scores = np.array([entry["lt_mia_score"] for entry in table])
    labels = np.array([entry["label"] for entry in table])
    fig = Figure(figsize=(6, 2.8), dpi=100)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41).tolist()
    if (labels >= 0).all():
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="members")
        ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="non-members")
    else:
        ax.hist(scores, bins=bins, color="#555", alpha=0.7, label="candidates")
    if result.evidence is not None:
        known = 1 / (1 + np.exp(-result.evidence.non_member_scores["lt_mia"]))
        ax.hist(known, bins=bins, histtype="step", color="#1f77b4", lw=1.5, label="known non-members")
    if (labels >= 0).all() or result.evidence is not None:
        ax.legend(fontsize=8)
    ax.set(xlabel="LT-MIA score (a ranking score, not a probability)", ylabel="texts")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def metrics_html(metrics: Evaluation) -> Markup:
    """SPEC §7 metrics with intervals: the table of ``ltmia evaluate``, drawn as HTML by the one table
    renderer, which escapes every cell (so the template may insert it as it is)."""
    return Markup(render_table(metrics.table(), "html"))


def heat(value: float | None, scale: float) -> str:
    """Background colour of a token: red pushes towards member, blue away; alpha by |value| / scale."""
    if value is None or scale <= 0:
        return "transparent"
    alpha = min(1.0, abs(value) / scale) * 0.85
    return f"rgba(214,39,40,{alpha:.3f})" if value > 0 else f"rgba(31,119,180,{alpha:.3f})"


def heatmap(explanation: Explanation) -> list[dict[str, str]]:
    """One text's tokens, each with its colour (occlusion attribution) and its numbers for the tooltip."""
    scale = max((abs(a) for a in explanation.attribution if a is not None), default=0.0)
    return [
        {
            "text": token,
            "colour": heat(value, scale),
            "tip": "first token: nothing predicts it"
            if value is None
            else f"attribution {value:+.3f} (logit) | log pT - log pR {gain:+.2f}",
        }
        for token, value, gain in zip(
            explanation.tokens, explanation.attribution, explanation.logprob_gain, strict=True
        )
    ]


def top_texts(result: AuditResult) -> list[dict]:
    """The explained texts (the top ranks, in rank order), each with its table entry and heatmap."""
    return [
        {"entry": entry, "tokens": heatmap(explanation)}
        for explanation, entry in zip(result.explanations, result.table, strict=False)
    ]


def score_table(table: list[dict], evidence: dict | None = None) -> dict:
    """Every scored text (up to ``MAX_TABLE_ROWS``; scores.csv has all) with its scores and a preview; with
    known non-members also the chosen attack's p-value, its BH-adjusted q-value and the selection (the
    other attacks' p-values are in scores.csv)."""
    shown = {"rank", "index", "label", "flags", "text", "selected"}
    numeric = [key for key in table[0] if key not in shown and not key.startswith("p_")]
    if evidence is not None:
        numeric = [key for key in numeric if key != "q_value"]
        numeric += [f"p_{evidence['selection']['attack']}", "q_value"]
    marks = ["selected"] if evidence is not None else []
    return {
        "head": ["rank", "text #", *numeric, *marks, "label", "flags", "text"],
        "numeric": numeric,
        "marks": marks,
        "rows": table[:MAX_TABLE_ROWS],
        "more": max(0, len(table) - MAX_TABLE_ROWS),
    }


def evidence(record: dict) -> dict:
    """The evidence section's values: the selection and the set verdict first, then the per-attack tests
    (smallest p-value first), the shift check and what the tests assume (``ltmia.audit.nonmembers``)."""
    found = record["evidence"]
    test, selection = found["set_test"], found["selection"]
    threshold = selection.get("lt_mia_score_threshold", selection["score_threshold"])
    lines = [
        ("selected", found["selected"]),
        (
            "threshold",
            "none selected" if threshold is None else f"{selection['attack']} score > {threshold:.4g}",
        ),
        ("set-level verdict", found["verdict"]),
        (
            "non-members",
            f"{found['non_members']} known (smallest possible p-value {found['smallest_p']:.3g})"
            + skipped_note(found.get("non_member_texts", {}).get("skipped", [])),
        ),
    ]
    if found["candidates_also_in_non_members"]:
        lines.append(
            ("overlap", f"{found['candidates_also_in_non_members']} candidates are also non-members")
        )
    return {
        "found": found,
        "lines": lines,
        "test": test,
        "selection": selection,
        "shift": found["shift_check"],
        "attacks": sorted(test["attacks"].items(), key=lambda item: item[1]["p_value"]),
    }
