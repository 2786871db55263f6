"""Audit a fine-tuned model: which of these candidate texts did it train on?

``read_texts`` / ``read_labels`` / ``candidates`` (inputs.py) -> ``audit`` (run.py: the recipe) ->
``explain`` (explain.py: occlusion per token) -> ``report.html`` (html.py). Known non-members
(``read_non_members``, nonmembers.py) add p-values, an FDR selection and a set-level verdict.

    from ltmia.audit import audit, candidates, read_texts
    from ltmia.models import load_tokenizer

    tokenizer = load_tokenizer("my-finetuned-model")
    found = candidates(read_texts("candidates.jsonl"), tokenizer)
    result = audit("my-finetuned-model", found, "audit-out", reference="base-model", tokenizer=tokenizer)
    result.table[0]  # the most member-like text, with every baseline's score and its flags

    unused = read_non_members("written-after-release.txt", tokenizer)  # texts certainly not trained on
    result = audit("my-finetuned-model", found, "audit-2", reference="base-model", non_members=unused)
    result.record["evidence"]["verdict"]  # the set-level verdict; result.table[i]["q_value"], ["selected"]

    result = audit_files("my-finetuned-model", "candidates.jsonl", "audit-3", non_members="unused.txt")
"""

from ltmia.audit.explain import Explanation, explain, occlusion
from ltmia.audit.inputs import Candidates, candidates, read_labels, read_texts
from ltmia.audit.nonmembers import EvidenceSettings, evidence_settings, read_non_members
from ltmia.audit.result import AuditResult
from ltmia.audit.run import SCORE_NOTE, AuditSettings, audit, audit_files

__all__ = [
    "SCORE_NOTE",
    "AuditResult",
    "AuditSettings",
    "Candidates",
    "EvidenceSettings",
    "Explanation",
    "audit",
    "audit_files",
    "candidates",
    "evidence_settings",
    "explain",
    "occlusion",
    "read_labels",
    "read_non_members",
    "read_texts",
]
