"""Corpora: built-in sizes, pools, caching and determinism; user sources; one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltmia.corpora import (
    CORPORA,
    PRETRAIN_PERCENT,
    builtin,
    corpus_texts,
    files,
    get_corpus,
    in_pretrain_pool,
)
from ltmia.errors import InputError, UnknownNameError

EXTRACTORS = {
    "stdlib-docs": builtin.stdlib_docs,
    "stdlib-code": builtin.stdlib_code,
    "fortunes": builtin.fortunes,
    "wordnet": builtin.wordnet,
    "python-docs": builtin.python_docs,
    "manpages": builtin.manpages,
}
TEXTS = ["First text, long enough to count.", "Second text.", "Third text, with ünïcode."]


@pytest.fixture(scope="session")
def home(ltmia_home: Path) -> Path:
    """The session's private LTMIA_HOME (conftest): each built-in is extracted once, ~/.cache is untouched."""
    return ltmia_home


@pytest.fixture(scope="session")
def loaded(home: Path) -> dict[str, list[str]]:
    return {name: CORPORA.get(name).load() for name in CORPORA.names()}


# --- built-ins ----------------------------------------------------------------------------------------


def test_builtins_cover_text_styles_and_code() -> None:
    kinds = [CORPORA.get(name).kind for name in CORPORA.names()]
    assert set(CORPORA.names()) == set(EXTRACTORS)
    assert kinds.count("text") >= 4 and kinds.count("code") >= 1
    for name in CORPORA.names():
        corpus = CORPORA.get(name)
        assert corpus.reserve_pretrain and corpus.name == name
        assert corpus.description and corpus.origin and corpus.licence
        assert "\n" not in corpus.description


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_builtin_has_enough_distinct_long_attack_texts(name: str, loaded: dict[str, list[str]]) -> None:
    texts = loaded[name]
    assert texts == sorted(set(texts)), "texts must be unique and sorted"
    assert all(text == text.strip() and text for text in texts)
    attack = corpus_texts(CORPORA.get(name), "attack")
    assert len({text for text in attack if len(text) > 50}) >= 3_000
    assert len(texts) <= builtin.CAP


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_builtin_pools_partition_the_corpus(name: str, loaded: dict[str, list[str]]) -> None:
    corpus = CORPORA.get(name)
    attack, pretrain = corpus_texts(corpus, "attack"), corpus_texts(corpus, "pretrain")
    assert not set(attack) & set(pretrain)
    assert sorted(attack + pretrain) == loaded[name] == corpus_texts(corpus, "all")
    assert abs(len(pretrain) / len(loaded[name]) * 100 - PRETRAIN_PERCENT) < 3


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_builtin_is_cached_on_disk_and_deterministic(
    name: str, loaded: dict[str, list[str]], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cache_file,) = (home / "corpora").glob(f"{name}-*.json")
    record = json.loads(cache_file.read_text(encoding="utf-8"))
    assert record["name"] == name and record["texts"] == loaded[name]
    monkeypatch.setattr(builtin, "_memo", {})
    assert CORPORA.get(name).load() == loaded[name]  # read back from disk
    assert builtin.finalise(EXTRACTORS[name]()) == loaded[name]  # extracted again


def test_builtin_load_returns_a_copy(loaded: dict[str, list[str]]) -> None:
    texts = CORPORA.get("fortunes").load()
    texts.clear()
    assert CORPORA.get("fortunes").load() == loaded["fortunes"]


def test_missing_package_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTMIA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(builtin, "FORTUNES_DIR", tmp_path / "absent")
    with pytest.raises(InputError, match="apt-get install -y fortunes"):
        CORPORA.get("fortunes").load()
    assert not list((tmp_path / "home").rglob("*.json"))


def test_pretrain_pool_is_the_documented_hash() -> None:
    for text in ["a", "b", "some text", "ünïcode"]:
        digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        assert in_pretrain_pool(text) == (digest % 100 < PRETRAIN_PERCENT)


def test_finalise_strips_dedupes_sorts_and_caps() -> None:
    assert builtin.finalise([" b ", "a", "b", "", "  "]) == ["a", "b"]
    capped = builtin.finalise([f"text {i}" for i in range(100)], cap=10)
    assert len(capped) == 10 and capped == sorted(capped)
    assert capped == builtin.finalise([f"text {i}" for i in reversed(range(100))], cap=10)


def test_roff_cleaner_keeps_prose_and_drops_synopsis_tags_and_code() -> None:
    page = [
        ".TH x 2",
        ".SH NAME",
        "x \\- y",
        ".SH DESCRIPTION",
        "The",
        ".BR open (2)",
        "call uses \\fIflags\\fP \\[em] see",
        '.I "the file"',
        ".UR http://a",
        "link",
        ".UE .",
        ".TP",
        ".B O_RDONLY",
        "Read only.",
        ".nf",
        "code();",
        ".fi",
    ]
    assert builtin.man_paragraphs("\n".join(page)) == [
        "The open(2) call uses flags — see the file link.",
        "Read only.",
    ]
    assert builtin.man_paragraphs(".so man3/printf.3\n") == []


def test_rest_cleaner_keeps_prose_and_drops_titles_and_code() -> None:
    document = [
        "Title",
        "=====",
        "",
        "See :func:`os.open`, :meth:`~a.B.c` and ``x``::",
        "",
        "   code()",
        "",
        ".. note::",
        "",
        "   A *note* [#]_.",
        "",
        ".. code-block:: c",
        "",
        "   int x;",
    ]
    paragraphs = [builtin.rst_inline(p) for p in builtin.rst_paragraphs("\n".join(document)) if "\0" not in p]
    assert paragraphs == ["See os.open, c and x:", "A note."]


# --- spec resolution ----------------------------------------------------------------------------------


def test_get_corpus_by_name_and_kind_override() -> None:
    assert get_corpus("fortunes") is CORPORA.get("fortunes")
    assert get_corpus("fortunes", kind="code").kind == "code"
    with pytest.raises(InputError, match="column"):
        get_corpus("fortunes", column="text")


def test_unknown_name_lists_names_and_other_sources() -> None:
    with pytest.raises(UnknownNameError) as caught:
        get_corpus("no-such-corpus")
    message = str(caught.value)
    assert all(name in message for name in CORPORA.names())
    assert "path" in message and "hf:" in message and "\n" not in message


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        get_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="no such file"):
        get_corpus("missing.jsonl")


# --- user files ---------------------------------------------------------------------------------------


def test_txt_lines_and_blocks(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"one\r\n two \r\none\r\nthree\n")
    corpus = get_corpus(str(lines))
    assert corpus.load() == ["one", "two", "three"]
    assert corpus.kind == "text" and not corpus.reserve_pretrain and corpus.name == str(lines)
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("a poem\nin two lines\n\n  \nsecond block\n\r\nthird\n", encoding="utf-8")
    assert get_corpus(str(blocks)).load() == ["a poem\nin two lines", "second block", "third"]


def test_user_corpus_pools(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("\n".join(TEXTS), encoding="utf-8")
    corpus = get_corpus(str(path))
    assert corpus_texts(corpus) == corpus_texts(corpus, "all") == TEXTS
    assert corpus_texts(corpus, "pretrain") == []


def test_jsonl_round_trip_keeps_order_and_drops_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"text": t, "label": i} for i, t in enumerate([*TEXTS, TEXTS[0]])] + [{"label": 9}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    assert get_corpus(str(path)).load() == TEXTS
    path.write_text("\n".join(json.dumps({"body": t}) for t in TEXTS), encoding="utf-8")
    assert get_corpus(str(path), column="body").load() == TEXTS


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('id,review\n1,"multi\nline, quoted"\n2,plain\n3,\n', encoding="utf-8")
    assert get_corpus(str(path), column="review").load() == ["multi\nline, quoted", "plain"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": [*TEXTS, None], "n": [1, 2, 3, 4]}), path)
    assert get_corpus(str(path)).load() == TEXTS
    with pytest.raises(InputError, match="not text"):
        get_corpus(str(path), column="n")


def test_saved_dataset_round_trip(tmp_path: Path) -> None:
    dataset = datasets.Dataset.from_dict({"content": TEXTS, "n": [1, 2, 3]})
    dataset.save_to_disk(str(tmp_path / "single"))
    assert get_corpus(str(tmp_path / "single"), column="content").load() == TEXTS
    splits = datasets.DatasetDict({"train": dataset, "test": dataset.select([0])})
    splits.save_to_disk(str(tmp_path / "dict"))
    corpus = get_corpus(str(tmp_path / "dict"), column="content")
    assert corpus.load() == TEXTS and corpus.kind == "text"
    with pytest.raises(InputError, match="choose one with --column from: content, n"):
        get_corpus(str(tmp_path / "single"))


def test_hub_spec_uses_id_split_and_column(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(dataset_id: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((dataset_id, config, split))
        return datasets.Dataset.from_dict({"text": TEXTS})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert get_corpus("hf:user/name:test[:10]").load() == TEXTS
    assert get_corpus("hf:user/name").origin.endswith("split train")
    assert get_corpus("hf:user/name@sub-config:validation").load() == TEXTS
    assert get_corpus("hf:wikimedia/wikipedia@20231101.en:train[:200000]").load() == TEXTS
    assert calls == [
        ("user/name", None, "test[:10]"),
        ("user/name", None, "train"),
        ("user/name", "sub-config", "validation"),
        ("wikimedia/wikipedia", "20231101.en", "train[:200000]"),  # a sliced split passes through whole
    ]
    with pytest.raises(InputError, match="names no dataset"):
        get_corpus("hf:")


NEWS = {
    "headline": ["Storm hits coast", None, "", None, "Vote counted"],
    "short_description": ["Thousands lose power.", "Markets calm.", "Only a description.", None, ""],
}
CODE = {
    "text": ["", None, "  ", None],
    "content": ["def a(): pass", "int b;", None, None],
    "code": ["ignored", "ignored", "fn c() {}", None],
}


def write_table(tmp_path: Path, name: str, columns: dict[str, list], suffix: str) -> Path:
    """``columns`` as a .jsonl (missing values as absent keys), .csv, .parquet or saved dataset."""
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({k: v for k, v in row.items() if v is not None}) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        header = ",".join(columns)
        lines = [",".join(json.dumps(v) if v is not None else "" for v in row.values()) for row in rows]
        path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    elif suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    else:
        datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", "-saved"])
def test_column_join_and_first_non_blank(tmp_path: Path, suffix: str) -> None:
    """``a+b`` joins a row's texts with one space, ``a|b|c`` takes its first non-blank; empty rows go."""
    news = write_table(tmp_path, "news", NEWS, suffix)
    assert get_corpus(str(news), column="headline+short_description").load() == [
        "Storm hits coast Thousands lose power.",
        "Markets calm.",
        "Only a description.",
        "Vote counted",
    ]
    code = write_table(tmp_path, "code", CODE, suffix)
    corpus = get_corpus(str(code), column="text|content|code|body|document", kind="code")
    assert corpus.load() == ["def a(): pass", "int b;", "fn c() {}"] and corpus.kind == "code"


def test_column_expressions_on_a_hub_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.Dataset.from_dict(NEWS))
    corpus = get_corpus("hf:heegyu/news-category-dataset:train", column="headline+short_description")
    assert corpus.load()[0] == "Storm hits coast Thousands lose power."


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("headline+body", "has no column 'body'; choose one with --column from: headline, short_description"),
        ("body|summary", "has no column 'body' or 'summary'; choose one with --column from: headline, short"),
        ("headline+short_description|body", "mixes '\\+' and '\\|'; write one column, a\\+b"),
        ("headline+", "has an empty name; write one column"),
        ("|headline", "has an empty name"),
    ],
)
def test_column_expression_errors(tmp_path: Path, column: str, message: str) -> None:
    path = write_table(tmp_path, "news", NEWS, ".jsonl")
    with pytest.raises(InputError, match=message):
        get_corpus(str(path), column=column)


def test_joined_column_must_hold_text(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"title": ["x", "y"], "n": [1, 2]}), path)
    with pytest.raises(InputError, match="column 'n' holds int64, not text"):
        get_corpus(str(path), column="title+n")
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"title": "x", "n": "1"}\n{"title": "y", "n": 2}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2: column 'n' holds int, not text"):
        get_corpus(str(path), column="n|title")


def test_source_folder_is_a_code_corpus(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("def a():\n    return 1\n", encoding="utf-8")
    (tmp_path / "b.c").write_text("int b(void) { return 2; }\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not code\n", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hook.sh").write_text("echo hidden\n", encoding="utf-8")
    corpus = get_corpus(str(tmp_path))
    assert corpus.kind == "code"
    assert corpus.load() == ["int b(void) { return 2; }", "def a():\n    return 1"]
    assert get_corpus(str(tmp_path), kind="text").kind == "text"


def test_long_source_files_are_cut_between_top_level_blocks() -> None:
    function = "def f{}(x):\n    y = x + 1\n\n    return y * 2  # " + "padding " * 40 + "\n\n\n"
    source = "".join(function.format(i) for i in range(40))
    chunks = files.code_chunks(source)
    assert "".join(chunks) == source and len(chunks) > 1
    assert all(len(chunk) <= files.MAX_CODE_CHARS and chunk.startswith("def f") for chunk in chunks)


# --- user errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_missing_column_lists_the_columns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    table = pa.table({"title": ["x"], "body": ["y"]})
    if suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".csv":
        path.write_text("title,body\nx,y\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(table.to_pylist()[0]), encoding="utf-8")
    with pytest.raises(InputError, match="no 'text' column; choose one with --column from: title, body"):
        get_corpus(str(path))
    with pytest.raises(InputError, match="no column 'txt'"):
        get_corpus(str(path), column="txt")


def test_non_utf8_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.txt is not UTF-8: byte 0xe9 at offset 3; re-encode"):
        get_corpus(str(path))


@pytest.mark.parametrize("content", [b"", b"  \n\n \n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty|no text"):
        get_corpus(str(path))


def test_other_user_errors(tmp_path: Path) -> None:
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'"):
        get_corpus(str(tmp_path / "data.xlsx"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n[1]\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is not a JSON object"):
        get_corpus(str(tmp_path / "bad.jsonl"))
    (tmp_path / "t.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(InputError, match="drop --column"):
        get_corpus(str(tmp_path / "t.txt"), column="text")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(InputError, match="no source files"):
        get_corpus(str(tmp_path / "empty-dir"))
