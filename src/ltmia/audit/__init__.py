"""Audit a fine-tuned model: which of these candidate texts did it train on?

``read_texts`` / ``read_labels`` / ``candidates`` (inputs.py) -> ``audit`` (run.py: the recipe) ->
``explain`` (explain.py: occlusion per token) -> ``report.html`` (html.py).

    from ltmia.audit import audit, candidates, read_texts
    from ltmia.models import load_tokenizer

    tokenizer = load_tokenizer("my-finetuned-model")
    found = candidates(read_texts("candidates.jsonl"), tokenizer)
    result = audit("my-finetuned-model", found, "audit-out", reference="base-model", tokenizer=tokenizer)
    result.table[0]  # the most member-like text, with every baseline's score and its flags
"""

from ltmia.audit.explain import Explanation, explain, occlusion
from ltmia.audit.inputs import Candidates, candidates, read_labels, read_texts
from ltmia.audit.run import SCORE_NOTE, AuditResult, AuditSettings, audit

__all__ = [
    "SCORE_NOTE",
    "AuditResult",
    "AuditSettings",
    "Candidates",
    "Explanation",
    "audit",
    "candidates",
    "explain",
    "occlusion",
    "read_labels",
    "read_texts",
]
