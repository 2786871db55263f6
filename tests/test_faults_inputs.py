"""Every row read is accounted for (issue 16): text readers keep one entry per row, audit candidates skip
rows without text *with their index*, labels cannot shift, CSV is strict, and hostile texts (NUL, ANSI,
HTML, huge lines) are read whole. ``hypothesis`` fuzzes the readers: any bytes give texts or one
InputError, never another exception."""

from __future__ import annotations

import csv
import io
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltmia.audit import candidates, read_labels, read_texts
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.corpora.files import csv_texts, jsonl_texts, txt_texts
from ltmia.errors import InputError

LONG = "A candidate text that is long enough to be scored like any other, with words in it."
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- rows without text: placeholders that keep every row's place ----------------------------------------


def test_jsonl_rows_without_text_are_skipped_with_their_index_and_labels_stay_aligned(tmp_path, tokenizer):
    """The issue's case: 4 lines, one missing the column and one null: 4 rows read, 2 skipped (#1, #2), the
    last text keeps index 3, and a labels file written for the 2 surviving lines is refused."""
    path = tmp_path / "texts.jsonl"
    rows = [{"text": LONG + " one"}, {"other": "no text here"}, {"text": None}, {"text": LONG + " four"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    raw = read_texts(path)
    assert raw == [LONG + " one", "", "", LONG + " four"]
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n0\n")
    with pytest.raises(InputError, match="has 2 labels but 4 texts were read"):
        read_labels(labels, len(raw))
    labels.write_text("1\n0\n1\n0\n")
    found = candidates(raw, tokenizer, read_labels(labels, len(raw)))
    assert found.index == [0, 3] and found.skipped == [1, 2] and found.n_read == 4
    assert found.labels == [1, 0]  # row 3's label is the 4th line, not the 2nd


def test_csv_and_parquet_nulls_are_placeholders(tmp_path):
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [LONG, None, "", LONG + "!"]}), table)
    assert read_texts(table) == [LONG, "", "", LONG + "!"]
    path = tmp_path / "t.csv"
    path.write_text(f'id,text\n1,"{LONG}"\n2,\n3,"{LONG}, with a comma"\n')
    assert read_texts(path) == [LONG, "", LONG + ", with a comma"]
    combined = tmp_path / "c.jsonl"
    combined.write_text('{"a": "x"}\n{"a": null, "b": null}\n{"b": "y"}\n')
    assert read_texts(combined, column="a|b") == ["x", "", "y"]
    assert read_texts(combined, column="a+b") == ["x", "", "y"]


def test_blocks_separated_by_several_blank_lines_make_no_phantom_rows(tmp_path):
    path = tmp_path / "blocks.txt"
    path.write_text("first block\nstill first\n\n\n\nsecond block\n \n\t\nthird\n")
    assert read_texts(path) == ["first block\nstill first", "second block", "third"]


def test_a_corpus_logs_every_row_it_leaves_out(tmp_path, caplog):
    path = tmp_path / "corpus.jsonl"
    rows = [{"text": f"{LONG} {i}"} for i in range(4)] + [{"text": None}, {"text": f"{LONG} 0"}, {}]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    with caplog.at_level(logging.INFO, logger="ltmia"):
        texts = corpus_texts(get_corpus(str(path)))
    assert texts == [f"{LONG} {i}" for i in range(4)]
    assert (
        "7 rows read, 4 distinct texts kept, 2 without text left out (rows 5, 7), 1 duplicates" in caplog.text
    )


# --- strict CSV ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('id,text\n1,"fine"\n2,"never closed\n3,"more"\n4,"and more', "line 3 is not valid CSV"),
        (
            'id,text\n1,"fine"\n2,"never closed\n',
            "line 3: a quoted field that starts in this record is never",
        ),
        ('id,text\n1,"closed" and then more\n', r"line 2 is not valid CSV \(',' expected after '\"'\)"),
        (
            "id,text\n1,one text\n2,a text, with an unquoted comma\n",
            "line 3 has 3 fields but the header has 2",
        ),
        ("id,text\n1,one text\n2\n", "line 3 has 1 fields but the header has 2"),
    ],
)
def test_malformed_csv_is_an_error_naming_the_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        read_texts(path)
    assert "\n" not in str(error.value) and "bad.csv" in str(error.value)


# --- hostile texts ---------------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert('x')</script> and an <img src=x onerror=alert(1)> in a candidate text of some length",
    "\x1b[2J\x1b[31mred and a cleared screen\x1b[0m, \x1b]0;new terminal title\x07 inside a long text",
    "a NUL \x00 byte, a bell \x07, a backspace \x08 and a bidi override \u202e in the middle of a text",
    "x" * 1_000_000,  # a huge line: over the csv module's 128 KiB field limit
]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
def test_hostile_texts_are_read_whole(tmp_path, suffix):
    path = tmp_path / f"hostile{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(HOSTILE))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": text}) for text in HOSTILE))
    elif suffix == ".csv":
        with path.open("w", newline="") as file:
            csv.writer(file).writerows([["text"], *([text] for text in HOSTILE)])
    else:
        pq.write_table(pa.table({"text": HOSTILE}), path)
    assert read_texts(path) == HOSTILE


# --- fuzzing ---------------------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_characters="\r", exclude_categories=("Cs",)), max_size=40)
"""Texts as they come back from a file: readers normalise \\r\\n and \\r to \\n."""


@FUZZ
@given(st.lists(st.one_of(TEXT, st.none(), st.just("<missing>")), min_size=1, max_size=12))
def test_fuzz_jsonl_keeps_one_entry_per_row(values):
    lines = [json.dumps({"n": 1} if value == "<missing>" else {"text": value, "n": 1}) for value in values]
    if all(value == "<missing>" for value in values):
        with pytest.raises(InputError, match="no 'text' column"):
            jsonl_texts("\n".join(lines), None, "fuzz.jsonl")
        return
    expected = ["" if value in (None, "<missing>") else value for value in values]
    assert jsonl_texts("\n".join(lines), None, "fuzz.jsonl") == expected


@FUZZ
@given(st.lists(TEXT, min_size=1, max_size=12))
def test_fuzz_csv_round_trips_what_csv_writes(values):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([["id", "text"], *([str(i), value] for i, value in enumerate(values))])
    assert csv_texts(buffer.getvalue(), None, "fuzz.csv") == values


@FUZZ
@given(st.lists(TEXT.filter(lambda text: text.strip() and "\n" not in text), min_size=1, max_size=12))
def test_fuzz_txt_lines_are_one_text_each(values):
    assert txt_texts("\n".join(values) + "\n", None, "fuzz.txt") == values


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".txt", ".jsonl", ".csv", ".parquet"]))
def test_fuzz_any_bytes_give_texts_or_one_input_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    path.write_bytes(data)
    try:
        texts = read_texts(path)
    except InputError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(texts, list) and all(isinstance(text, str) for text in texts)


@FUZZ
@given(st.lists(st.sampled_from(["", "  ", "\t\n", LONG, LONG + " b", "short one"]), min_size=1, max_size=15))
def test_fuzz_candidates_account_for_every_row(tokenizer, raw):
    try:
        found = candidates(raw, tokenizer)
    except InputError:
        assert not any(text.strip() for text in raw)
        return
    assert sorted(found.index + found.skipped) == list(range(len(raw))) and found.n_read == len(raw)
    assert all(raw[i].strip() == text for i, text in zip(found.index, found.texts, strict=True))
    assert all(not raw[i].strip() for i in found.skipped)
