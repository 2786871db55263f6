"""An audit's inputs: candidate texts (and optional labels) read from a file or stdin, checked, flagged.

Nothing the user gave is dropped silently: every row read is either scored or skipped *and listed*. The
readers (``ltmia.corpora.files``) return one text per row (a .txt line or block, a .jsonl line, a .csv
record, a Parquet row); a row whose text is missing, null, empty or whitespace cannot be scored, so it is
skipped and reported with its input position, and it keeps its place: every text keeps its input position
(``index``, 0-based, the order of the file), and a labels file gives one label per row read, skipped rows
included, so labels cannot shift onto the wrong texts (a labels file of any other length is refused). Texts
are stripped, as fine-tuning stripped them (SPEC §2). Texts the method would not have used are still
scored, with a flag saying why their score is less trustworthy:

- ``short``: SPEC §2 drops texts of 50 characters or fewer from every member and non-member set, so the
  classifier never saw one;
- ``truncated``: longer than L-1 tokens; only the first L-1 (code: the last) are read (SPEC §2);
- ``duplicate``: the same text as an earlier candidate (both are scored; they get the same score).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ltmia.corpora.files import PARSERS, READERS, decode_utf8
from ltmia.data import MIN_CHARS, SEQ_LEN
from ltmia.errors import InputError
from ltmia.store import UNLABELLED

STDIN = "-"
LABEL_WORDS = {"1": 1, "member": 1, "true": 1, "yes": 1, "0": 0, "non-member": 0, "false": 0, "no": 0}


@dataclass
class Candidates:
    """The scoreable texts of an audit with their input positions, labels and flags.

    ``texts[i]`` was row ``index[i]`` of the input; ``skipped`` lists the input positions of rows without
    text (missing, null, empty or whitespace); ``labels[i]`` is 1 / 0, or -1 when no labels were given;
    ``n_read`` rows were read, so ``len(texts) + len(skipped) == n_read``.
    """

    texts: list[str]
    index: list[int]
    labels: list[int]
    flags: list[list[str]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    n_read: int = 0

    @property
    def labelled(self) -> bool:
        return UNLABELLED not in self.labels

    def flag_counts(self) -> dict[str, int]:
        """How many scored texts carry each flag, plus the skipped count."""
        counts = {"skipped_empty": len(self.skipped)}
        for flags in self.flags:
            for flag in flags:
                counts[flag] = counts.get(flag, 0) + 1
        return counts


def read_texts(
    source: str | Path, column: str | None = None, fmt: str | None = None, stdin: BinaryIO | None = None
) -> list[str]:
    """One text per row of a .txt / .jsonl / .csv / .parquet file, or of stdin (``"-"``, format ``fmt``,
    default txt), in file order and unstripped; ``""`` for a row without text. A .txt is blocks separated
    by blank lines if it has blank lines, else one text per line."""
    if str(source) == STDIN:
        parser = PARSERS.get(f".{fmt or 'txt'}")
        if parser is None:
            raise InputError(f"cannot read {fmt!r} from stdin; use --format txt, jsonl or csv")
        data = (stdin or sys.stdin.buffer).read()
        if not data.strip():
            raise InputError(
                "stdin is empty; pipe in texts (one per line, or blocks separated by blank lines)"
            )
        return parser(decode_utf8(data, "stdin"), column, "stdin")
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(
            f"{source}: no such file; give a .txt, .jsonl, .csv or .parquet file, or - for stdin"
        )
    reader = READERS.get(f".{fmt}" if fmt else path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unsupported file type {path.suffix!r}; give .txt, .jsonl, .csv or .parquet"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; give a file with at least one text")
    return reader(path, column)


def read_labels(path: str | Path, expected: int) -> list[int]:
    """One label per non-blank line (1/0, member/non-member, true/false, yes/no), one per row read
    (``expected``), rows without text included."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labels file; give one label (1 or 0) per line, one per text")
    lines = [line.strip().lower() for line in decode_utf8(path.read_bytes(), path).split("\n")]
    words = [line for line in lines if line]
    bad = next((word for word in words if word not in LABEL_WORDS), None)
    if bad is not None:
        raise InputError(f"{path}: label {bad!r} is not 1/0 (or member/non-member); write one per line")
    if len(words) != expected:
        raise InputError(
            f"{path} has {len(words)} labels but {expected} texts were read; give exactly one per text row, "
            "in order, rows with an empty or missing text included (they are skipped but keep their place)"
        )
    return [LABEL_WORDS[word] for word in words]


def candidates(
    raw: list[str], tokenizer, labels: list[int] | None = None, seq_len: int = SEQ_LEN
) -> Candidates:
    """Raw texts (and labels, one per raw text) -> the scoreable ``Candidates``, flagged (module docstring).

    A set with nothing left to score is an InputError.
    """
    if labels is not None and len(labels) != len(raw):
        raise InputError(f"{len(labels)} labels for {len(raw)} texts; give exactly one label per text")
    kept = [(i, text.strip()) for i, text in enumerate(raw) if text.strip()]
    if not kept:
        raise InputError(
            f"all {len(raw)} texts are empty or whitespace (or missing); give at least one non-empty text"
        )
    texts = [text for _, text in kept]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    seen: set[str] = set()
    flags = []
    for text, length in zip(texts, lengths, strict=True):
        flags.append(
            [
                name
                for name, hit in (
                    ("short", len(text) <= MIN_CHARS),
                    ("truncated", length > seq_len - 1),
                    ("duplicate", text in seen),
                )
                if hit
            ]
        )
        seen.add(text)
    index = [i for i, _ in kept]
    if labels is not None and len({labels[i] for i in index}) < 2:
        raise InputError(
            "the labels of the scored texts are all one class; metrics need members and non-members "
            "(drop --labels to only score)"
        )
    return Candidates(
        texts=texts,
        index=index,
        labels=[UNLABELLED] * len(texts) if labels is None else [labels[i] for i in index],
        flags=flags,
        skipped=[i for i, text in enumerate(raw) if not text.strip()],
        n_read=len(raw),
    )
