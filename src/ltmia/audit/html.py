"""The audit's ``report.html``: one self-contained page (inline CSS, images as data URIs, no script, nothing
fetched), so it opens offline and can be mailed or archived as one file.

Sections, each with a stable id: evidence against known non-members (first, when they were given), summary,
how to read the scores, score distribution, metrics and ROC (with labels), top texts with per-token heatmaps,
every score, settings and versions. Every user text is HTML-escaped: the candidates are untrusted input.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ltmia.artefacts import write_text
from ltmia.audit.explain import Explanation
from ltmia.audit.result import AuditResult
from ltmia.evaluation import Evaluation
from ltmia.evaluation import render as render_table

MAX_TABLE_ROWS = 1000
PREVIEW_CHARS = 160

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.2rem .45rem}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.6rem .9rem}
.tokens{font-family:ui-monospace,monospace;font-size:.85rem;white-space:pre-wrap;word-break:break-all;
border:1px solid #ddd;padding:.5rem;background:#fff}
.tokens span{border-radius:2px}.flag{background:#eee;border-radius:3px;padding:0 .3rem;font-size:.75rem}
.legend span{padding:0 .4rem}
"""


def write_report(result: AuditResult, path: Path) -> Path:
    """Render ``result`` as ``path`` (written through a temporary file and a rename)."""
    write_text(path, render(result))
    return path


def render(result: AuditResult) -> str:
    """The whole page as a string."""
    record = result.record
    sections = []
    if "evidence" in record:
        sections.append(section("evidence", "Evidence against the known non-members", evidence_html(record)))
    sections += [
        section("summary", "Summary", summary(result)),
        section(
            "reading-scores", "How to read the scores", f'<p class="note">{esc(record["score_note"])}</p>'
        ),
        section("distribution", "Score distribution", image(distribution_png(result), "histogram")),
    ]
    if result.metrics is not None:
        roc = result.out / "metrics-roc.png"
        body = metrics_html(result.metrics) + image(roc.read_bytes(), "ROC curves")
        sections.append(section("metrics", "Metrics against the given labels", body))
    sections += [
        section("top-texts", "Top-scoring texts, token by token", top_texts(result)),
        section("scores", "Every score", score_rows(result.table, record.get("evidence"))),
        section("settings", "Settings and versions", f"<pre>{esc(json.dumps(record, indent=2))}</pre>"),
    ]
    title = f"ltmia audit of {Path(record['target']).name}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def skipped_note(skipped: list[int]) -> str:
    """Rows without text, by input position, as a note: "; 2 rows without text skipped (input #3, #7)"
    (nothing when there are none)."""
    if not skipped:
        return ""
    shown = ", #".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
    return f"; {len(skipped)} row{'s' * (len(skipped) > 1)} without text skipped (input #{shown})"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def image(png: bytes, alt: str) -> str:
    """A PNG inlined as a data URI, so the page needs no other file."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def summary(result: AuditResult) -> str:
    """Models, classifier and what happened to the texts, as a definition table."""
    record, texts = result.record, result.record["texts"]
    reference = record["reference"] + (
        " (adapters disabled)" if record["reference_adapters_disabled"] else ""
    )
    flagged = ", ".join(f"{texts.get(flag, 0)} {flag}" for flag in ("short", "truncated", "duplicate"))
    rows = [
        ("target", record["target"]),
        ("reference", reference),
        ("classifier", f"{record['classifier']['path']} ({record['classifier']['variant']})"),
        ("texts", f"{texts['read']} read, {texts['scored']} scored, {texts['skipped_empty']} empty skipped"),
        ("flagged (scored)", flagged),
        ("labels", "given: metrics below" if texts["labelled"] else "none (scores only)"),
        ("took", f"{record['seconds']} s"),
    ]
    cells = "".join(f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>" for name, value in rows)
    return f"<table>{cells}</table>"


def distribution_png(result: AuditResult) -> bytes:
    """Histogram of LT-MIA scores; members and non-members apart when labels are known, the known
    non-members beside the candidates when they were given."""
    table = result.table
    scores = np.array([entry["lt_mia_score"] for entry in table])
    labels = np.array([entry["label"] for entry in table])
    fig = Figure(figsize=(6, 2.8), dpi=100)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
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


def metrics_html(metrics: Evaluation) -> str:
    """SPEC §7 metrics with intervals: the table of ``ltmia evaluate``, drawn as HTML (cells escaped)."""
    return render_table(metrics.table(), "html")


def heat(value: float | None, scale: float) -> str:
    """Background colour of a token: red pushes towards member, blue away; alpha by |value| / scale."""
    if value is None or scale <= 0:
        return "transparent"
    alpha = min(1.0, abs(value) / scale) * 0.85
    return f"rgba(214,39,40,{alpha:.3f})" if value > 0 else f"rgba(31,119,180,{alpha:.3f})"


def heatmap(explanation: Explanation) -> str:
    """One text's tokens as spans coloured by occlusion attribution, with the numbers in the tooltip."""
    scale = max((abs(a) for a in explanation.attribution if a is not None), default=0.0)
    spans = []
    for token, value, gain in zip(
        explanation.tokens, explanation.attribution, explanation.logprob_gain, strict=True
    ):
        tip = (
            "first token: nothing predicts it"
            if value is None
            else (f"attribution {value:+.3f} (logit) | log pT - log pR {gain:+.2f}")
        )
        spans.append(f'<span style="background:{heat(value, scale)}" title="{esc(tip)}">{esc(token)}</span>')
    return f'<div class="tokens">{"".join(spans)}</div>'


def top_texts(result: AuditResult) -> str:
    """The explained texts, best score first, each with its heatmap."""
    if not result.explanations:
        return "<p>No explanations were asked for (explain = 0).</p>"
    legend = (
        '<p class="legend">Each token is coloured by how much the LT-MIA logit falls when the classifier '
        'does not see it (occlusion): <span style="background:rgba(214,39,40,.6)">towards member</span>'
        '<span style="background:rgba(31,119,180,.6)">away from member</span>. Hover a token for its '
        "numbers. Sequence statistics (SPEC §4 global block) stay visible when a token is hidden, so a "
        "token's share of them is not in its colour.</p>"
    )
    parts = [legend]
    # the explained texts are the top ranks, in rank order
    for explanation, entry in zip(result.explanations, result.table, strict=False):
        flags = "".join(f' <span class="flag">{esc(flag)}</span>' for flag in entry["flags"])
        label = {1: " · member", 0: " · non-member"}.get(entry["label"], "")
        parts.append(
            f"<h3>#{entry['rank']} · text {entry['index']} · score {entry['lt_mia_score']:.3f}"
            f"{label}{flags}</h3>{heatmap(explanation)}"
        )
    return "".join(parts)


def score_rows(table: list[dict], evidence: dict | None = None) -> str:
    """Every scored text (up to ``MAX_TABLE_ROWS``; scores.csv has all) with its scores and a preview; with
    known non-members also the chosen attack's p-value, its BH-adjusted q-value and the selection (the
    other attacks' p-values are in scores.csv)."""
    shown = {"rank", "index", "label", "flags", "text", "selected"}
    numeric = [key for key in table[0] if key not in shown and not key.startswith("p_")]
    if evidence is not None:
        numeric = [key for key in numeric if key != "q_value"]
        numeric += [f"p_{evidence['selection']['attack']}", "q_value"]
    marks = ["selected"] if evidence is not None else []
    head = "".join(
        f"<th>{esc(name)}</th>" for name in ["rank", "text #", *numeric, *marks, "label", "flags", "text"]
    )
    rows = []
    for entry in table[:MAX_TABLE_ROWS]:
        numbers = "".join(f'<td class="num">{entry[name]:.4g}</td>' for name in numeric)
        numbers += "".join(f"<td>{'yes' if entry[name] else ''}</td>" for name in marks)
        preview = entry["text"][:PREVIEW_CHARS] + ("…" if len(entry["text"]) > PREVIEW_CHARS else "")
        rows.append(
            f'<tr><td class="num">{entry["rank"]}</td><td class="num">{entry["index"]}</td>{numbers}'
            f"<td>{esc({1: 'member', 0: 'non-member'}.get(entry['label'], '?'))}</td>"
            f"<td>{esc(' '.join(entry['flags']))}</td><td>{esc(preview)}</td></tr>"
        )
    more = f"<p>{len(table) - MAX_TABLE_ROWS} more in scores.csv.</p>" if len(table) > MAX_TABLE_ROWS else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def evidence_html(record: dict) -> str:
    """The selection and the set verdict first, then the per-attack tests, the shift check and what the
    tests assume (``ltmia.audit.nonmembers``)."""
    found = record["evidence"]
    test, shift, selection = found["set_test"], found["shift_check"], found["selection"]
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
    head = "".join(
        f"<th>{esc(name)}</th>"
        for name in (
            "attack",
            "AUC [95% CI]",
            "p (one-sided U)",
            "p (Holm)",
            "selected (same rule)",
            "texts for power",
        )
    )
    rows = []
    for attack, entry in sorted(test["attacks"].items(), key=lambda item: item[1]["p_value"]):
        low, high = entry["auc_ci"]
        needed = entry["n_needed"]
        rows.append(
            f"<tr><td>{esc(attack)}</td><td>{entry['auc']:.3f} [{low:.3f}, {high:.3f}]</td>"
            f'<td class="num">{entry["p_value"]:.3g}</td><td class="num">{entry["p_holm"]:.3g}</td>'
            f'<td class="num">{found["selections_by_attack"][attack]["n_selected"]}</td>'
            f'<td class="num">{"unreachable" if needed is None else needed}</td></tr>'
        )
    shift_rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{shift[name]['mean_candidates']:.3f}</td>"
        f"<td>{shift[name]['mean_non_members']:.3f}</td><td>{shift[name]['auc']:.3f}</td>"
        f'<td class="num">{shift[name]["p_holm"]:.3g}</td></tr>'
        for name in ("reference_loss", "tokens")
    )
    shift_text = (
        "The reference model tells the sets apart: the verdict may reflect a distribution shift."
        if shift["shift_detected"]
        else "The reference model does not tell the sets apart at this level (no shift detected)."
    )
    return (
        "<table>"
        + "".join(f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>" for name, value in lines)
        + "</table>"
        + f"<h3>Set-level tests ({esc(test['method'])}, alpha {test['alpha']})</h3>"
        + f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        + f"<p>Texts for power: candidates needed for {test['power']:.0%} power at alpha / k with the known "
        "non-members, from the observed score distributions (normal approximation of U); unreachable: more "
        "non-members are needed, or there is no effect. Per-attack selections other than "
        f"{esc(selection['attack'])} are for comparison: choosing among them afterwards voids the FDR.</p>"
        + "<h3>Shift check (reference model)</h3><table><tr><th>measure</th><th>mean, candidates</th>"
        + "<th>mean, non-members</th><th>AUC</th><th>p (two-sided, Holm)</th></tr>"
        + f"{shift_rows}</table><p>{esc(shift_text)}</p>"
        + f'<p class="note">{esc(found["assumptions"])}</p>'
    )
