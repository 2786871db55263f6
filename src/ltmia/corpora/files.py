"""User corpus sources: text and table files, saved or hub datasets, and folders of source code.

Everything is read when the corpus is resolved, so a wrong path, column or encoding fails at once with a
one-line ``InputError`` rather than mid-run. User texts keep their file order (their order may mean
something to the user); they are stripped, empty ones dropped and exact duplicates dropped after the first,
and a log line counts both.

Every row read is accounted for. The readers return exactly one text per row (a .txt line or block, a
.jsonl object line, a .csv record, a Parquet or dataset row), in order: a row whose text is missing, null
or blank gives the empty text ``""``, a placeholder that keeps every later row at its own position, so an
audit reports it as skipped with its input index and a labels file has one label per row, never shifted.
A row that cannot be read (not JSON, not an object, a non-text value, a malformed CSV record) is an
``InputError`` naming its line or row. CSV is parsed strictly: a quote never closed, text after a closing
quote or a record with another number of fields than the header is an error, not a silently merged text.

A ``column`` names one column, or combines several per row: ``a+b`` joins the texts of ``a`` and ``b``
with one space (missing or blank values left out), ``a|b|c`` takes the first non-blank of them (columns
absent from the source are skipped; at least one must exist).

A folder of source code becomes a code corpus with one text per file; a file over ``MAX_CODE_CHARS`` is cut
at blank lines that precede an unindented line (between top-level definitions), and consecutive pieces are
packed into texts of at most ``MAX_CODE_CHARS`` (a single longer piece stays whole).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ltmia.corpora.base import MAX_CODE_CHARS, Corpus, Kind
from ltmia.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

log = logging.getLogger(__name__)

SUPPORTED = "a .txt, .jsonl, .csv or .parquet file, a folder of source code or a datasets save_to_disk folder"
CODE_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".mjs", ".ts", ".tsx", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh",
    ".java", ".kt", ".scala", ".go", ".rs", ".rb", ".sh", ".bash", ".pl", ".pm", ".php", ".lua", ".swift",
    ".cs", ".m", ".r", ".jl", ".hs", ".ml", ".sql", ".dart", ".zig", ".ex", ".exs", ".erl", ".clj",
}  # fmt: skip
SKIPPED_DIRS = {"node_modules", "__pycache__", "venv", "site-packages"}
BLOCK_BREAK = re.compile(r"\n[ \t]*\n(?=\S)")
SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def looks_like_path(spec: str) -> bool:
    """Whether a spec that names nothing on disk was meant as a path (so the error says so)."""
    return (
        "/" in spec or os.sep in spec or spec.startswith(("~", ".")) or Path(spec).suffix.lower() in READERS
    )


def path_corpus(spec: str, *, column: str | None, kind: Kind | None) -> Corpus:
    """A corpus read from a file or folder."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder; check the path (or give a built-in corpus name)")
    if path.is_dir() and any((path / marker).exists() for marker in SAVED_DATASET_MARKERS):
        return user_corpus(spec, saved_dataset_texts(path, column), kind or "text", str(path.resolve()))
    if path.is_dir():
        refuse_column(column, path)
        return user_corpus(spec, source_texts(path), kind or "code", str(path.resolve()))
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; give {SUPPORTED}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; give a file with texts")
    return user_corpus(spec, reader(path, column), kind or "text", str(path.resolve()))


def hub_corpus(spec: str, *, column: str | None, kind: Kind | None) -> Corpus:
    """A corpus from ``hf:<dataset id>[@<config>][:<split>]`` on the Hugging Face hub (needs network or the
    HF cache), e.g. ``hf:Salesforce/wikitext@wikitext-103-raw-v1:train``."""
    import datasets  # slow to import, and only needed for dataset sources

    dataset_id, _, split = spec.removeprefix("hf:").partition(":")
    dataset_id, _, config = dataset_id.partition("@")
    split = split or "train"
    if not dataset_id:
        raise InputError(
            f"{spec!r} names no dataset; write hf:<dataset id>[@<config>][:<split>], e.g. hf:imdb:test"
        )
    try:
        dataset = datasets.load_dataset(dataset_id, config or None, split=split)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load hub dataset {dataset_id!r}, split {split!r}: {reason}") from err
    origin = f"Hugging Face hub dataset {dataset_id}, split {split}"
    return user_corpus(spec, dataset_texts(dataset, column, spec), kind or "text", origin)


def user_corpus(spec: str, texts: Sequence[str], kind: Kind, origin: str) -> Corpus:
    """Wrap user texts (stripped, first occurrences kept) as a corpus with no pretraining share; a log
    line accounts for every row read (kept, without text, or a duplicate)."""
    stripped = [text.strip() for text in texts]
    unique = list(dict.fromkeys(text for text in stripped if text))
    if not unique:
        raise InputError(f"{spec} holds no text; give a source with at least one non-blank text")
    blank = [i for i, text in enumerate(stripped) if not text]
    if blank or len(unique) < len(texts) - len(blank):
        shown = ", ".join(str(i + 1) for i in blank[:5]) + (", ..." if len(blank) > 5 else "")
        log.info(
            "%s: %d rows read, %d distinct texts kept, %d without text left out%s, %d duplicates left out",
            spec,
            len(texts),
            len(unique),
            len(blank),
            f" (rows {shown})" if blank else "",
            len(texts) - len(blank) - len(unique),
        )
    return Corpus(
        name=spec,
        kind=kind,
        description=f"User-supplied {kind} corpus read from {spec}.",
        origin=origin,
        licence="unknown (user-supplied; check it before sharing results or models)",
        load=lambda: list(unique),
    )


# --- files --------------------------------------------------------------------------------------------


def read_utf8(path: Path) -> str:
    """The file's text with newlines normalised; non-UTF-8 bytes are refused rather than guessed at."""
    return decode_utf8(path.read_bytes(), path)


def decode_utf8(data: bytes, where: str | Path) -> str:
    """Bytes read from ``where`` (a file, or stdin) as text with newlines normalised; non-UTF-8 is refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        name = Path(where).name
        raise InputError(
            f"{where} is not UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}; "
            f"re-encode it to UTF-8, e.g. iconv -f latin1 -t utf-8 {name} > utf8-{name}"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def refuse_column(column: str | None, path: str | Path) -> None:
    """A column given for a source without columns is a mistake worth reporting, not ignoring."""
    if column is not None:
        raise InputError(
            f"{path} has no columns; drop --column (it applies to .jsonl, .csv, .parquet and datasets)"
        )


@dataclass(frozen=True)
class Columns:
    """The column(s) a text is read from: one, ``a+b`` (joined by a space) or ``a|b|c`` (first non-blank)."""

    names: tuple[str, ...]
    combine: Literal["one", "join", "first"] = "one"

    def text(self, values: Sequence[str | None]) -> str | None:
        """One row's text from its values of ``names`` (None: missing); None when the row has no text."""
        if self.combine == "one":
            return values[0]
        present = [value for value in values if value is not None and value.strip()]
        if self.combine == "first":
            return present[0] if present else None
        return " ".join(present) if present else None


COLUMN_SYNTAX = "write one column, a+b (texts joined by a space) or a|b (the first non-blank)"


def parse_columns(column: str | None) -> Columns:
    """A ``column`` value as `Columns` (``text`` when none is given); a malformed one is an InputError."""
    if column is None:
        return Columns(("text",))
    if "+" in column and "|" in column:
        raise InputError(f"column {column!r} mixes '+' and '|'; {COLUMN_SYNTAX}")
    operator = "+" if "+" in column else "|" if "|" in column else None
    names = tuple(column.split(operator)) if operator else (column,)
    if not all(names):
        raise InputError(f"column {column!r} has an empty name; {COLUMN_SYNTAX}")
    combine: dict[str | None, Literal["one", "join", "first"]] = {None: "one", "+": "join", "|": "first"}
    return Columns(names, combine[operator])


def pick_columns(column: str | None, available: Iterable[str], source: object) -> Columns:
    """The requested column(s), else ``text``; a missing one lists what there is. Alternatives of
    ``a|b|c`` that the source lacks are dropped, as long as one of them exists."""
    names = list(available)
    chosen = parse_columns(column)
    missing = [name for name in chosen.names if name not in names]
    if chosen.combine == "first" and len(missing) < len(chosen.names):
        return Columns(tuple(name for name in chosen.names if name in names), "first")
    if missing:
        if column is None:
            what = "'text' column"
        elif chosen.combine == "first":
            what = "column " + " or ".join(repr(name) for name in chosen.names)
        else:
            what = f"column {missing[0]!r}"
        raise InputError(
            f"{source} has no {what}; choose one with --column from: {', '.join(names) or '(none)'}"
        )
    return chosen


BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


def txt_texts(text: str, column: str | None, path: str | Path) -> list[str]:
    """Blocks separated by one or more blank lines if the text has blank lines, else one text per line.
    Line breaks at the very start and end are layout, not texts (a file's final newline would otherwise be
    an empty text)."""
    refuse_column(column, path)
    text = text.strip("\n")
    return BLANK_LINES.split(text) if BLANK_LINES.search(text.strip()) else text.split("\n")


def row_texts(
    rows: Iterable[tuple[str, Sequence[object]]], columns: Columns, path: str | Path
) -> Iterator[str]:
    """The text of each row given as (where, values of ``columns.names``); ``where`` locates a non-text
    value in the error. A row without text (missing or null values) gives the placeholder ``""``."""
    for where, values in rows:
        for name, value in zip(columns.names, values, strict=True):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{path} {where}: column {name!r} holds {type(value).__name__}, not text")
        text = columns.text([value if isinstance(value, str) else None for value in values])
        yield "" if text is None else text


def jsonl_texts(text: str, column: str | None, path: str | Path) -> list[str]:
    """One text per JSON object line (``""`` for a row without the column or with null); blank lines are
    layout, not rows."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"{path} line {number} is not JSON ({err.msg}); write one object per line"
                ) from None
            if not isinstance(row, dict):
                raise InputError(f"{path} line {number} is not a JSON object; write one object per line")
            rows.append((f"line {number}", row))
    columns = pick_columns(column, dict.fromkeys(key for _, row in rows for key in row), path)
    values = ((where, [row.get(name) for name in columns.names]) for where, row in rows)
    return list(row_texts(values, columns, path))


CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB) would refuse a long text


def csv_texts(text: str, column: str | None, path: str | Path) -> list[str]:
    """One text per record of CSV with a header line; quoted fields may span lines, blank lines are
    layout. Strict (module docstring): errors name the line where the bad record starts."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, start = [], 1
    try:
        header = next(reader, None) or []
        start = reader.line_num + 1
        for record in reader:
            if record:
                records.append((start, record))
            start = reader.line_num + 1
    except csv.Error as err:
        if "unexpected end of data" in str(err):
            raise InputError(
                f"{path} line {start}: a quoted field that starts in this record is never closed; close it "
                'with " (a quote inside a quoted field is written "")'
            ) from None
        raise InputError(
            f"{path} line {start} is not valid CSV ({err}); quote fields holding commas, quotes or line "
            'breaks, and write a quote inside them as ""'
        ) from None
    columns = pick_columns(column, header, path)
    for line, record in records:
        if len(record) != len(header):
            raise InputError(
                f"{path} line {line} has {len(record)} fields but the header has {len(header)}; quote "
                "fields that hold commas"
            )
    positions = [header.index(name) for name in columns.names]
    values = ((f"line {line}", [record[i] for i in positions]) for line, record in records)
    return list(row_texts(values, columns, path))


def parquet_texts(path: Path, column: str | None) -> list[str]:
    """One text per row; only the chosen columns are read, so wide tables stay cheap."""
    try:
        schema = pq.read_schema(path)
    except pa.ArrowException as err:
        raise InputError(f"{path} is not a readable Parquet file ({err})") from None
    columns = pick_columns(column, schema.names, path)
    text_types = (pa.types.is_string, pa.types.is_large_string)
    for name in columns.names:
        if not any(is_type(schema.field(name).type) for is_type in text_types):
            raise InputError(
                f"{path}: column {name!r} holds {schema.field(name).type}, not text; choose another"
            )
    table = pq.read_table(path, columns=list(dict.fromkeys(columns.names)))
    values = zip(*(table.column(name).to_pylist() for name in columns.names), strict=True)
    return list(row_texts(((f"row {i + 1}", row) for i, row in enumerate(values)), columns, path))


PARSERS: dict[str, Callable[[str, str | None, str | Path], list[str]]] = {
    ".txt": txt_texts,
    ".jsonl": jsonl_texts,
    ".csv": csv_texts,
}
"""Text formats by suffix: (decoded text, column, where it came from for errors) -> texts."""


def parsed_file(parser: Callable[[str, str | None, str | Path], list[str]]) -> Callable:
    """A file reader from a text parser: read the file as UTF-8, then parse it."""
    return lambda path, column: parser(read_utf8(path), column, path)


READERS: dict[str, Callable[[Path, str | None], list[str]]] = {
    **{suffix: parsed_file(parser) for suffix, parser in PARSERS.items()},
    ".parquet": parquet_texts,
}


# --- datasets -----------------------------------------------------------------------------------------


def saved_dataset_texts(path: Path, column: str | None) -> list[str]:
    """Texts of a folder written by ``Dataset.save_to_disk`` (a ``DatasetDict``: its train or only split)."""
    import datasets  # slow to import, and only needed for dataset sources

    loaded = datasets.load_from_disk(str(path))
    return dataset_texts(only_split(loaded, path), column, path)


def only_split(loaded: Dataset | DatasetDict, path: Path) -> Dataset:
    """The dataset itself, or from a ``DatasetDict`` its ``train`` split, else its only split."""
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded
    if "train" in loaded:
        return loaded["train"]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    splits = ", ".join(loaded)
    raise InputError(
        f"{path} holds splits {splits} and none is 'train'; give a split's folder, e.g. {path}/<split>"
    )


def dataset_texts(dataset: Dataset, column: str | None, source: str | Path) -> list[str]:
    """The texts of the string column(s) of a ``datasets.Dataset`` (``column`` as in `parse_columns`)."""
    columns = pick_columns(column, dataset.column_names, source)
    for name in columns.names:
        dtype = getattr(dataset.features[name], "dtype", None)
        if dtype not in ("string", "large_string"):
            raise InputError(
                f"{source}: column {name!r} holds {dataset.features[name]}, not text; choose another"
            )
    if columns.combine == "one":
        return ["" if value is None else value for value in dataset[columns.names[0]]]
    values = zip(*(dataset[name] for name in columns.names), strict=True)
    return list(row_texts(((f"row {i + 1}", row) for i, row in enumerate(values)), columns, source))


# --- source code --------------------------------------------------------------------------------------


def source_files(root: Path) -> Iterator[Path]:
    """Source files under ``root`` in sorted path order, skipping hidden and dependency folders."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in CODE_SUFFIXES:
                yield Path(folder) / name


def code_chunks(source: str) -> list[str]:
    """The file whole if short enough, else runs of top-level blocks of at most ``MAX_CODE_CHARS``."""
    if len(source) <= MAX_CODE_CHARS:
        return [source]
    starts = [0, *(match.end() for match in BLOCK_BREAK.finditer(source))]
    chunks = [""]
    for start, end in zip(starts, [*starts[1:], len(source)], strict=True):
        block = source[start:end]
        if chunks[-1] and len(chunks[-1]) + len(block) > MAX_CODE_CHARS:
            chunks.append("")
        chunks[-1] += block
    return chunks


def source_texts(root: Path) -> list[str]:
    """Texts of every source file under ``root``, long files cut into top-level chunks."""
    files = list(source_files(root))
    if not files:
        raise InputError(
            f"{root} holds no source files ({', '.join(sorted(CODE_SUFFIXES))}); give {SUPPORTED}"
        )
    return [chunk for path in files for chunk in code_chunks(read_utf8(path))]
