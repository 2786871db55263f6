"""Built-in corpora: real English prose and Python code already on a Debian machine, usable offline.

Each corpus is extracted from an installed package or the Python standard library, then stripped, exactly
deduplicated, capped and sorted. Extraction takes seconds, so the result is cached as JSON under
``$LTMIA_HOME/corpora/`` keyed by corpus name, extractor version and source fingerprint (package version or
Python version): a new package or a changed extractor gets a new file and old files are left alone.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import platform
import re
import sys
import sysconfig
import textwrap
import tokenize
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path

from ltmia.artefacts import ltmia_home, write_text
from ltmia.corpora.base import CORPORA, MAX_CODE_CHARS, Corpus, Kind
from ltmia.errors import InputError

CAP = 30_000
"""Most texts kept per corpus: enough for any split, small enough to cache and tokenise quickly."""

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
PYTHON_DOCS_DIR = Path("/usr/share/doc/python3/html/_sources")
MAN_DIR = Path("/usr/share/man")
DPKG_STATUS = Path("/var/lib/dpkg/status")
DPKG_INFO = Path("/var/lib/dpkg/info")

_memo: dict[Path, list[str]] = {}


# --- caching -------------------------------------------------------------------------------------------


def finalise(texts: Iterable[str], cap: int = CAP) -> list[str]:
    """Strip, drop empties and exact duplicates, keep a hash-chosen ``cap`` of them, and sort.

    The cap keys on a salted hash so that the kept share is an unbiased sample that does not correlate with
    the (unsalted) pretraining pool choice.
    """
    unique = {text.strip() for text in texts} - {""}
    if len(unique) > cap:
        unique = set(sorted(unique, key=lambda t: hashlib.sha256(b"cap:" + t.encode()).digest())[:cap])
    return sorted(unique)


def cached_texts(
    name: str, version: str, fingerprint: str, extract: Callable[[], Iterable[str]]
) -> list[str]:
    """Texts of one built-in corpus, from memory, else the disk cache, else extracted and cached."""
    key = hashlib.sha256(f"{name}\0{version}\0{fingerprint}".encode()).hexdigest()[:16]
    path = ltmia_home() / "corpora" / f"{name}-{key}.json"
    if path not in _memo:
        if path.exists():
            _memo[path] = json.loads(path.read_text(encoding="utf-8"))["texts"]
        else:
            texts = finalise(extract())
            record = {"name": name, "version": version, "fingerprint": fingerprint, "texts": texts}
            _write_atomically(path, json.dumps(record, ensure_ascii=False))
            _memo[path] = texts
    return list(_memo[path])


def _write_atomically(path: Path, content: str) -> None:
    """Write whole or not at all (``ltmia.artefacts.write_text``: no temporary file stays when it fails), so
    that concurrent runs never read a half-written cache; a cache that cannot be written is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, content)
    except OSError as err:
        raise InputError(
            f"cannot write the corpus cache {path}: {err}; set LTMIA_HOME to a writable folder"
        ) from err


# --- registration -------------------------------------------------------------------------------------


@cache
def debian_versions() -> dict[str, str]:
    """Installed Debian package -> version, read from dpkg's status file (empty off Debian)."""
    if not DPKG_STATUS.exists():
        return {}
    versions = {}
    for stanza in DPKG_STATUS.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^(Package|Status|Version): (.*)$", stanza, flags=re.M))
        if fields.get("Status", "").endswith(" installed") and "Version" in fields:
            versions[fields["Package"]] = fields["Version"]
    return versions


def debian_origin(packages: tuple[str, ...], where: Path) -> str:
    """Human-readable origin: the packages with their installed versions and the folder read."""
    named = ", ".join(f"{p} {debian_versions().get(p, '(not installed)')}" for p in packages)
    return f"Debian package{'s' if len(packages) > 1 else ''} {named}; files under {where}"


def require(path: Path, package: str) -> None:
    """Fail with the install command when a package's files are missing."""
    if not path.exists():
        raise InputError(f"{path} is missing: install it with: apt-get install -y {package}")


def python_fingerprint() -> str:
    """Cache key part for stdlib corpora: the sources change only with the Python version."""
    return f"{sys.implementation.name}-{platform.python_version()}"


def register_builtin(
    name: str,
    *,
    kind: Kind,
    description: str,
    origin: str,
    licence: str,
    fingerprint: Callable[[], str],
    version: str = "1",
) -> Callable[[Callable[[], Iterable[str]]], Callable[[], Iterable[str]]]:
    """Decorator registering an extractor as a cached built-in corpus; bump ``version`` when it changes."""

    def register(extract: Callable[[], Iterable[str]]) -> Callable[[], Iterable[str]]:
        def load() -> list[str]:
            return cached_texts(name, version, fingerprint(), extract)

        corpus = Corpus(
            name, kind, one_line(description), origin, one_line(licence), load, reserve_pretrain=True
        )
        CORPORA.register(name)(corpus)
        return extract

    return register


def debian_fingerprint(*packages: str) -> Callable[[], str]:
    """Cache key part for package corpora: their installed versions, read at load time (not import)."""
    return lambda: ",".join(f"{p}={debian_versions().get(p, '')}" for p in packages)


# --- shared text helpers ------------------------------------------------------------------------------


def is_prose(paragraph: str) -> bool:
    """Whether a paragraph reads as English sentences rather than a heading, list of names or code."""
    words = paragraph.split()
    letters = sum(ch.isalpha() for ch in paragraph)
    return (
        len(words) >= 6
        and letters >= 0.7 * len(paragraph.replace(" ", ""))
        and (paragraph[0].isalnum() or paragraph[0] in "\"'(“")
        and paragraph[-1] in ".:?!)"
        and sum(word.isalpha() and word.islower() for word in words) >= len(words) / 2
    )


def one_line(text: str) -> str:
    """Text with all whitespace runs made single spaces: metadata is written wrapped but shown on one line."""
    return " ".join(text.split())


def reflow(lines: Iterable[str]) -> str:
    """Join wrapped lines into one line with single spaces."""
    return one_line(" ".join(lines))


# --- stdlib -------------------------------------------------------------------------------------------

STDLIB_SKIP = {"test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages", "__pycache__"}


def stdlib_modules() -> Iterator[tuple[str, ast.Module]]:
    """Source and syntax tree of every standard-library module, tests and IDLE excluded; nothing imported."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if STDLIB_SKIP.isdisjoint(path.relative_to(root).parts):
            with tokenize.open(path) as f:
                source = f.read()
            try:
                yield source, ast.parse(source)
            except (SyntaxError, ValueError):  # a few fixtures are deliberately invalid
                continue


STDLIB_ORIGIN = (
    f"Python {platform.python_version()} standard library sources, {sysconfig.get_paths()['stdlib']}"
)
PSF_LICENCE = "PSF License Agreement (Python Software Foundation License Version 2)"


@register_builtin(
    "stdlib-docs",
    kind="text",
    description="""Docstrings of the Python standard library (modules, classes, functions), cleaned with
    inspect.cleandoc: terse technical English explaining APIs, often with argument lists and short
    examples.""",
    origin=STDLIB_ORIGIN,
    licence=PSF_LICENCE,
    fingerprint=python_fingerprint,
)
def stdlib_docs() -> Iterator[str]:
    for _, tree in stdlib_modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield ast.get_docstring(node, clean=True) or ""


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def definitions(tree: ast.Module) -> Iterator[Definition]:
    """Top-level functions, methods of top-level classes, and whole top-level classes without methods.

    Classes with methods are left out as wholes: they would contain their methods' texts, and overlapping
    texts would leak members into the non-member set.
    """
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions):
            yield node
        elif isinstance(node, ast.ClassDef):
            methods: list[Definition] = [child for child in node.body if isinstance(child, functions)]
            yield from methods or [node]


def source_of(lines: list[str], node: Definition) -> str:
    """A definition's source with its decorators, dedented to column 0."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("".join(lines[start - 1 : node.end_lineno]))


@register_builtin(
    "stdlib-code",
    kind="code",
    description="""Python function, method and method-less class definitions from the standard library
    sources, with decorators, docstrings and comments, dedented; definitions over 4,000 characters are left
    out.""",
    origin=STDLIB_ORIGIN,
    licence=PSF_LICENCE,
    fingerprint=python_fingerprint,
)
def stdlib_code() -> Iterator[str]:
    for source, tree in stdlib_modules():
        lines = source.splitlines(keepends=True)
        for node in definitions(tree):
            text = source_of(lines, node)
            if len(text) <= MAX_CODE_CHARS:
                yield text


# --- fortunes -----------------------------------------------------------------------------------------


@register_builtin(
    "fortunes",
    kind="text",
    description="""Fortune cookies from the BSD fortune databases: quotations, jokes, aphorisms, short
    poems, definitions and anecdotes in informal English, each kept whole with its line breaks.""",
    origin=debian_origin(("fortunes", "fortunes-min"), FORTUNES_DIR),
    licence="""BSD licence for the fortune-mod collection; individual quotations are of various, often
    unattributed, copyright status (see /usr/share/doc/fortunes/copyright)""",
    fingerprint=debian_fingerprint("fortunes", "fortunes-min"),
)
def fortunes() -> Iterator[str]:
    require(FORTUNES_DIR / "computers", "fortunes")
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.is_file() and not path.suffix:  # .dat are indexes, .u8 are links to the same files
            text = re.sub(".\x08", "", path.read_text(encoding="utf-8"))  # drop typewriter overstrikes
            yield from re.split(r"^%$", text, flags=re.M)


# --- WordNet ------------------------------------------------------------------------------------------


def wordnet_entry(line: str) -> str:
    """``lemma, lemma: gloss`` from one synset line of a WordNet data file."""
    fields = line.split(" ")
    count = int(fields[3], 16)
    lemmas = (re.sub(r"\((a|p|ip)\)$", "", word).replace("_", " ") for word in fields[4 : 4 + 2 * count : 2])
    gloss = line.partition(" | ")[2]
    return f"{', '.join(dict.fromkeys(lemmas))}: {gloss}"


@register_builtin(
    "wordnet",
    kind="text",
    description="""WordNet 3.0 synsets (nouns, verbs, adjectives, adverbs) as 'lemma, synonym: gloss',
    where the gloss is a dictionary definition usually followed by quoted example sentences.""",
    origin=debian_origin(("wordnet-base",), WORDNET_DIR),
    licence="WordNet 3.0 License (Princeton University; permissive, with notice)",
    fingerprint=debian_fingerprint("wordnet-base"),
)
def wordnet() -> Iterator[str]:
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{pos}"
        require(path, "wordnet-base")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("  "):  # the licence header is indented
                yield wordnet_entry(line)


# --- Python documentation (reST) ----------------------------------------------------------------------

PROSE_DIRECTIVES = {
    "attribute", "class", "classmethod", "coroutinefunction", "coroutinemethod", "data", "decorator",
    "decoratormethod", "deprecated", "deprecated-removed", "describe", "exception", "function",
    "impl-detail", "important", "method", "note", "seealso", "staticmethod", "tip", "versionadded",
    "versionchanged", "warning", "abstractmethod", "admonition", "caution", "attention", "hint", "topic",
    "sidebar", "glossary", "rubric", "option", "cmdoption", "envvar", "opcode", "pdbcommand", "module",
    "c:function", "c:macro", "c:member", "c:type", "c:var", "cfunction", "cmember", "ctype", "cvar",
}  # fmt: skip
"""Directives whose indented body is prose; the bodies of all others (code, tables, toctrees) are dropped."""

RST_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
RST_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
RST_MARKUP = [
    (re.compile(r"\s*\[(?:#\w*|\d+|\*)\]_"), ""),  # footnote references
    (re.compile(r"\|\w+\|"), "\0"),  # substitutions (|version|...) cannot be resolved: spoil the paragraph
    (re.compile(r"(?<!\w)([A-Za-z][\w-]*[A-Za-z0-9])__?(?=[\s.,;:)'\"]|$)"), r"\1"),  # named references
    (re.compile(r"``(.+?)``"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"(?<![\w*])\*(\S.*?)\*(?!\w)"), r"\1"),
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\\ ?"), ""),
    (re.compile(r"\s+::$"), ""),
    (re.compile(r"::$"), ":"),
]
LIST_MARKER = re.compile(r"^([*+-]|#\.|\d+\.|\(?[a-z0-9]\))\s+")


def role_text(match: re.Match[str]) -> str:
    """What Sphinx shows for a role: the explicit title, else the target (``~`` keeps its last part)."""
    titled = re.fullmatch(r"(.*?)\s*<[^<>]*>", match[1], flags=re.S)
    if titled:
        return titled[1]
    target = match[1].lstrip("!")
    return target[1:].rsplit(".", 1)[-1] if target.startswith("~") else target


def rst_inline(text: str) -> str:
    """Plain text of reST inline markup: roles, links, literals, emphasis and escapes."""
    text = RST_ROLE.sub(role_text, text)
    text = RST_LINK.sub(r"\1", text)
    for pattern, plain in RST_MARKUP:
        text = pattern.sub(plain, text)
    return text


def is_rule(line: str) -> bool:
    """A title underline, transition or simple-table border: one punctuation character repeated."""
    return len(line) >= 3 and len(set(line) - {" "}) == 1 and line[0] in "=-~^\"'`#*+_.:"


def rst_paragraphs(source: str) -> Iterator[str]:
    """Reflowed paragraphs of one reST document, markup still in; spoiled ones carry a NUL.

    Drops comments, targets, literal blocks, definition-list terms and the bodies of non-prose directives;
    titles, tables, line blocks and doctests are marked spoiled. Paragraphs inside prose directives (notes,
    function descriptions...), list items and definitions are kept.
    """
    paragraph: list[str] = []
    first_indent = 0
    skip_deeper = -1  # while >= 0, blank lines and lines indented deeper than this belong to a dropped block
    for line in source.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper >= 0 and (not stripped or indent > skip_deeper):
            continue
        skip_deeper = -1
        if paragraph and (not stripped or stripped.startswith(".. ") or LIST_MARKER.match(stripped)):
            yield reflow(paragraph)
            paragraph = []
        if stripped.startswith(".. "):
            directive = re.match(r"\.\. ([\w:-]+)::", stripped)
            skip_deeper = -1 if directive and directive[1] in PROSE_DIRECTIVES else indent
        elif is_rule(stripped) or stripped[:1] in ("+", "|", ">"):
            paragraph.append("\0")
        elif stripped and not re.match(r":[\w -]+:(\s|$)", stripped):  # options and fields are not prose
            if paragraph and indent > first_indent:  # a definition-list term, now followed by its definition
                paragraph = []
            if not paragraph:
                marker = LIST_MARKER.match(stripped)
                first_indent = indent + (marker.end() if marker else 0)
            paragraph.append(LIST_MARKER.sub("", stripped, count=1))
            if stripped.endswith("::"):  # a literal block follows
                yield reflow(paragraph)
                paragraph, skip_deeper = [], first_indent
    if paragraph:
        yield reflow(paragraph)


@register_builtin(
    "python-docs",
    kind="text",
    description="""Prose paragraphs of the Python 3 documentation (tutorial, library and language
    reference, HOWTOs, FAQs, What's New), from its reST sources with markup, code and tables removed and
    each paragraph reflowed to one line: explanatory technical English.""",
    origin=debian_origin(("python3-doc",), PYTHON_DOCS_DIR),
    licence=PSF_LICENCE,
    fingerprint=debian_fingerprint("python3-doc"),
)
def python_docs() -> Iterator[str]:
    require(PYTHON_DOCS_DIR, "python3-doc")
    for path in sorted(PYTHON_DOCS_DIR.rglob("*.rst.txt")):
        for paragraph in rst_paragraphs(path.read_text(encoding="utf-8")):
            text = rst_inline(paragraph)
            if "\0" not in text and is_prose(text):
                yield text


# --- man pages (roff) ---------------------------------------------------------------------------------

MAN_SKIP_SECTIONS = {"NAME", "SYNOPSIS", "LIBRARY", "SEE ALSO", "COLOPHON", "EXAMPLES", "EXAMPLE", "AUTHORS"}
"""Sections that are lists of names, prototypes or code rather than prose."""

ROFF_GLYPHS = {
    "aq": "'", "dq": '"', "bu": "•", "em": "—", "en": "–", "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
    "ha": "^", "ti": "~", "ga": "`", "co": "©", "rg": "®", "dg": "†", "sc": "§", "mc": "µ", "de": "°",
    "+-": "±", "mu": "×", "<=": "≤", ">=": "≥", "->": "→", "<-": "←", "!=": "≠", "hy": "-", "rs": "\\",
}  # fmt: skip
ROFF_PLAIN = {
    "-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "'": "'", "`": "`", ".": ".",
}  # fmt: skip
"""Single-character escapes that print something; all others (``\\&``, ``\\c``, ``\\%``...) print nothing."""

ROFF_ESCAPE = re.compile(
    r"""\\(?:
      \((?P<glyph>..)                                          # \(xx
    | \[(?P<named>[^\]]*)\]                                  # \[name]
    | \*(?:\((?P<string>..)|\[(?P<strings>[^\]]*)\]|(?P<string1>.))  # \*(xx \*[name] \*x
    | [fFgkmMnVY](?:\(..|\[[^\]]*\]|.)                     # fonts, colours, registers
    | s[+-]?(?:\(\d\d|\[\d+\]|\d)                          # point size
    | [hHvwlLNbDoxXSRZ]'[^']*'                             # motions and drawing
    | (?P<char>.)                                          # one character
    )""",
    re.X,
)


def roff_escape(match: re.Match[str]) -> str:
    """Replacement for one roff escape: its glyph, its printable character, or nothing."""
    name = match["glyph"] or match["named"] or match["string"] or match["strings"] or match["string1"]
    if name:
        return ROFF_GLYPHS.get(name, "")
    return ROFF_PLAIN.get(match["char"] or "", "")


def roff_text(text: str) -> str:
    """Plain text of a roff text line: fonts and sizes dropped, glyphs and escaped characters printed."""
    return ROFF_ESCAPE.sub(roff_escape, text)


def roff_args(rest: str) -> list[str]:
    """Arguments of a roff macro call: double-quoted strings or words (an escaped blank does not split)."""
    return [
        word or quoted.replace('""', '"')
        for quoted, word in re.findall(r'"((?:[^"]|"")*)"?|((?:\\.|\S)+)', rest)
    ]


FONT_JOINED = {"B", "I", "SM", "SB"}
"""Font macros whose arguments are words of one phrase."""
FONT_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
"""Font macros that alternate fonts between arguments printed without spaces, as in ``.BR open (2)``."""
BREAKS = {
    "SH": "", "SS": "", "PP": "", "P": "", "LP": "", "HP": "", "TP": "", "TQ": "", "IP": "", "RS": "",
    "RE": "", "sp": "", "br": "", "nf": "fi", "EX": "EE", "TS": "TE",
}  # fmt: skip
"""Requests that end a paragraph, with the request ending the unfilled block (code, table) they open."""


class ManPage:
    """Turns one roff man page into paragraphs of plain text, dropping synopses, code, tables and tags."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.lines: list[str] = []
        self.section = ""
        self.until = ""  # while set, skip lines up to this request (end of no-fill, table, macro definition)
        self.tag_next = False

    def flush(self) -> None:
        if self.lines and self.section not in MAN_SKIP_SECTIONS:
            self.paragraphs.append(reflow(self.lines))
        self.lines = []

    def text(self, words: str) -> None:
        if self.tag_next:  # the line after .TP is a term (a flag, a constant), not part of a sentence
            self.tag_next = False
        else:
            self.lines.append(words)

    def request(self, name: str, args: list[str]) -> None:
        if name in FONT_JOINED and args:
            self.text(" ".join(roff_text(a) for a in args))
        elif name in FONT_ALTERNATING:
            self.text("".join(roff_text(a) for a in args))
        elif name in {"UE", "ME"} and self.lines:
            self.lines[-1] += roff_text("".join(args))
        elif name in BREAKS:
            self.flush()
            self.section = " ".join(args).upper() if name == "SH" else self.section
            self.tag_next = name in {"TP", "TQ"}
            self.until = BREAKS[name]
        elif name in {"de", "ig"}:
            self.until = "."

    def feed(self, line: str) -> None:
        line = re.sub(r'\\".*', "", line)
        request = re.match(r"[.']\s*(\S*)\s*(.*)", line)
        name = request[1] if request else ""
        if self.until:
            self.until = "" if name == self.until else self.until
        elif request:
            self.request(name, roff_args(request[2]))
        elif line.strip():
            self.text(roff_text(line))
        else:
            self.flush()


def man_paragraphs(source: str) -> list[str]:
    """Plain-text paragraphs of a man page; a ``.so`` redirect page has none."""
    if re.search(r"^\.so ", source, flags=re.M):
        return []
    page = ManPage()
    for line in re.sub(r"(?<!\\)\\\n", "", source).splitlines():
        page.feed(line)
    page.flush()
    return [re.sub(r" ([.,;:)])(?=\s|$)", r"\1", p) for p in page.paragraphs]


def man_files(packages: tuple[str, ...]) -> Iterator[Path]:
    """The regular man-page files of sections 2, 3, 5 and 7 that the given packages installed."""
    for package in packages:
        listing = DPKG_INFO / f"{package}.list"
        require(listing, package)
        for line in listing.read_text(encoding="utf-8").splitlines():
            path = Path(line)
            if (
                re.fullmatch(r"man[2357]", path.parent.name)
                and path.suffix == ".gz"
                and not path.is_symlink()
            ):
                require(path, package)
                yield path


MAN_PACKAGES = ("manpages", "manpages-dev")


@register_builtin(
    "manpages",
    kind="text",
    description="""Prose paragraphs of the Linux man-pages project (sections 2 system calls, 3 library
    functions, 5 file formats, 7 overviews), converted from roff with synopses, examples, code and tables
    removed: precise, formal technical English.""",
    origin=debian_origin(MAN_PACKAGES, MAN_DIR),
    licence="""Various free licences per page (mostly the Linux man-pages copyleft licence and GPL-2+, some
    BSD and MIT/Expat); see /usr/share/doc/manpages/copyright""",
    fingerprint=debian_fingerprint(*MAN_PACKAGES),
)
def manpages() -> Iterator[str]:
    for path in sorted(man_files(MAN_PACKAGES)):
        for paragraph in man_paragraphs(gzip.decompress(path.read_bytes()).decode("utf-8")):
            if is_prose(paragraph):
                yield paragraph
