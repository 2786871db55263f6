"""Artefacts are directories with a JSON manifest (the ``save_pretrained`` idea), written atomically and
checked when read.

Writing (``building``): a stage writes into the scratch directory ``<out>.partial`` and it is renamed to
``<out>`` only when everything, manifest last, is on disk; so a directory named ``<out>`` with a manifest is
always complete, and a crash never leaves a half-written artefact that looks finished. The scratch
directory holds a marker file (``MARKER``, naming the run, process and host) that the writing process
keeps locked (``flock``) while it works:

- a second writer of the same ``<out>`` finds the marker locked and stops with one line (``BusyError``);
- a marker that nobody holds is the leftover of a run that died: ltmia made it, so it may clear it (or a
  resumable writer, the feature store, continue it);
- a ``<out>.partial`` without a marker is not ltmia's: it is refused, never deleted. An existing ``<out>``
  is replaced only on request (``replace``, the CLI's ``--overwrite``), and only once the new one is whole.

Files are written whole or not at all (``atomic_path``: a temporary file, then a rename, removed when the
writing fails), by this module's writers and every other writer of ltmia's files alike.

Result directories (``claim_output``): the tables and plots of ``evaluate``, a study's results and an audit
go into a directory the user names. ltmia writes there only when it is new, empty, or ltmia's own earlier
output of the same kind, known by a record (``OUTPUT_RECORD``) listing the files ltmia wrote there, or for
an output of an ltmia from before records, by its contents. Anything else is refused in one line; ltmia
removes a file there only when the record lists it.

Checking (``write_manifest`` / ``verify_files``): the manifest records each file's size and SHA-256. A load
checks every size and hashes only files whose size or modification time changed since ltmia last hashed
them (a cache of (size, mtime, hash) in the artefact, ``CHECKED``, seeded by the writer); ``--verify``
(``LTMIA_VERIFY=1``) hashes every file. Artefacts written before checksums existed record none and load as
before.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from ltmia.errors import BusyError, DamagedError, OutputExistsError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MARKER = ".ltmia-scratch"
"""Marker file of a scratch directory: ltmia made it; locked by the process writing it."""
OUTPUT_RECORD = ".ltmia-output.json"
"""Record of a result directory: which command wrote it (``ltmia``) and the ``files`` it wrote there."""
CHECKED = ".ltmia-checked.json"
"""Per artefact, {file: [bytes, mtime_ns, sha256]} of the files last hashed: the fast path of checking."""
VERIFY_ENV = "LTMIA_VERIFY"
RUN_ID = uuid.uuid4().hex
"""This process's run id, written into the markers of the scratch directories it makes."""
MARKER_GRACE_SECONDS = 2.0
"""How long a fresh ``<out>.partial`` without a marker may be another writer's (between mkdir and marker)."""
_PACKAGES = ("ltmia", "torch", "transformers", "tokenizers", "peft", "safetensors", "numpy")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide ltmia's numbers, for every manifest, and torch's
    thread count: it changes the order of float reductions, so bit-identical re-runs need the same one."""
    import torch

    found = {
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
        "cpu": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ISA torch's kernels use
    }
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def ltmia_home() -> Path:
    """Root of ltmia's user cache (corpora, converted models): ``$LTMIA_HOME``, else ``~/.cache/ltmia``."""
    return Path(os.environ.get("LTMIA_HOME") or Path.home() / ".cache" / "ltmia")


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform.processor()``): float reductions
    differ across instruction sets, so a result file says which CPU produced it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# --- whole files ----------------------------------------------------------------------------------------


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it becomes ``path`` (a rename) when the block ends
    without error, so readers never see half a file. The name is per process: two writers never share it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text whole or not at all (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: object) -> None:
    """Write JSON whole or not at all (``atomic_path``)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True))


def read_json(path: Path, fix: str = "write it again") -> object:
    """A JSON file ltmia wrote; one that does not parse is a ``DamagedError`` naming it and ``fix``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = getattr(error, "msg", None) or type(error).__name__
        raise DamagedError(f"{path} is not valid JSON ({reason}); it is damaged: {fix}") from None


def read_manifest(directory: Path, name: str = MANIFEST) -> dict | None:
    """The manifest of a complete artefact, or None when ``directory`` is not one; a manifest that is not
    a JSON object is a ``DamagedError``."""
    path = Path(directory) / name
    if not path.is_file():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise DamagedError(f"{path} is not a JSON object; it is damaged: write the artefact again")
    return manifest


# --- result directories ---------------------------------------------------------------------------------


def claim_output(
    out: Path,
    what: str,
    fix: str,
    legacy: Callable[[Path], list[str] | None] | None = None,
    *,
    create: bool = True,
) -> list[str]:
    """Make ``out`` a result directory of ``what`` (e.g. "ltmia evaluate"), or refuse it; return the files
    (relative paths) ltmia wrote there before, which the caller may replace or remove.

    New or empty: created, recorded, nothing before. ltmia's output of the same ``what``: its record's
    ``files``; one of an ltmia from before records: ``legacy(out)``, the files its contents show ltmia
    wrote (None: not ltmia's). Anything else - a file, a non-empty directory without ltmia's output in it,
    another command's output - is an ``OutputExistsError`` naming ``out`` and ending in ``fix``. Files a
    user added to ltmia's output are left alone (``strays`` finds them where the caller must not).
    ``create=False`` only checks (before a long job): nothing is created or recorded.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a directory; {fix}")
    if not out.exists() or not any(out.iterdir()):
        if create:
            out.mkdir(parents=True, exist_ok=True)
            record_output(out, what, [])
        return []
    record = read_output_record(out)
    if record is not None:
        if record.get("ltmia") != what:
            raise OutputExistsError(f"{out} holds the output of {record.get('ltmia')}, not of {what}; {fix}")
        return [str(name) for name in record.get("files", [])]
    files = legacy(out) if legacy is not None else None
    if files is None:
        raise OutputExistsError(
            f"{out} is not empty and not an earlier output of {what}: ltmia writes only into a new or empty "
            f"directory or its own earlier output; {fix}"
        )
    if create:
        record_output(out, what, files)
    return files


def read_output_record(out: Path) -> dict | None:
    """A result directory's record (``claim_output``), or None when there is none or it is not ltmia's."""
    try:
        record = json.loads((Path(out) / OUTPUT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files", []), list) else None


def record_output(out: Path, what: str, files: Sequence[str]) -> None:
    """Record that ltmia (command ``what``) wrote ``files`` in ``out``; written *before* a file is, so that
    an interrupted run leaves every file it wrote listed."""
    write_json(Path(out) / OUTPUT_RECORD, {"ltmia": what, "files": sorted(set(files))})


def strays(out: Path, files: Sequence[str], within: str = "") -> list[str]:
    """The files under ``out / within`` (paths relative to ``out``, sorted) that are neither in ``files``
    nor a temporary file of one (``atomic_path``'s, left by a killed run) nor the record: what ltmia did not
    write there."""
    root, listed = Path(out), set(files)
    names = (p.relative_to(root).as_posix() for p in sorted((root / within).rglob("*")) if not p.is_dir())
    return [
        name
        for name in names
        if name not in listed and name != OUTPUT_RECORD and not _debris_of(name, listed)
    ]


def _debris_of(name: str, listed: set[str]) -> bool:
    """``<file>.<pid>.tmp`` of a listed file: what a killed ``atomic_path`` leaves."""
    stem, dot, suffix = name.rpartition(".")
    head, _, pid = stem.rpartition(".")
    return bool(dot) and suffix == "tmp" and pid.isdigit() and head in listed


def remove_written(out: Path, files: Sequence[str]) -> None:
    """Remove ``files`` (ltmia's, per its record) from ``out``, with the temporary files a killed writer
    left of them; nothing else."""
    root = Path(out)
    listed = set(files)
    for name in listed:
        (root / name).unlink(missing_ok=True)
    for path in root.rglob("*.tmp"):
        if path.is_file() and _debris_of(path.relative_to(root).as_posix(), listed):
            path.unlink()


# --- checksums ------------------------------------------------------------------------------------------


def full_verification() -> bool:
    """Whether every load hashes every file (``--verify`` sets ``LTMIA_VERIFY=1``, inherited by workers)."""
    return os.environ.get(VERIFY_ENV, "") not in ("", "0")


def _bookkeeping(name: str) -> bool:
    """Files of ltmia's own bookkeeping that are no part of an artefact's content."""
    return name in (MARKER, CHECKED) or name.endswith(".tmp")


def file_entries(directory: Path, exclude: Sequence[str] = ()) -> list[dict]:
    """``{"file", "bytes", "sha256"}`` of every file under ``directory`` (recursive, sorted), except
    ``exclude`` and ltmia's bookkeeping."""
    directory = Path(directory)
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name not in exclude and not _bookkeeping(path.name):
            entries.append({"file": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return entries


def _read_checked(directory: Path) -> dict:
    try:
        checked = json.loads((directory / CHECKED).read_text())
    except (OSError, ValueError):
        return {}
    return checked if isinstance(checked, dict) else {}


def remember_checked(directory: Path, entries: Sequence[dict]) -> None:
    """Record that ``entries`` (as on disk now) match their hashes, so the next load need not hash them.
    Best effort: an artefact in a read-only place is simply hashed again next time."""
    directory = Path(directory)
    checked = _read_checked(directory)
    for entry in entries:
        stat = (directory / entry["file"]).stat()
        checked[entry["file"]] = [stat.st_size, stat.st_mtime_ns, entry["sha256"]]
    try:
        write_json(directory / CHECKED, checked)
    except OSError as error:
        log.debug("cannot record checked files in %s: %s", directory, error)


def write_manifest(directory: Path, manifest: dict, name: str = MANIFEST) -> None:
    """Write ``manifest`` plus ``files`` (size and SHA-256 of every other file in ``directory``) as the
    artefact's manifest: the last file written, so call it when everything else is on disk."""
    directory = Path(directory)
    entries = file_entries(directory, exclude=(name,))
    write_json(directory / name, {**manifest, "files": entries})
    remember_checked(directory, entries)


def verify_files(directory: Path, entries: Sequence[dict], fix: str, full: bool | None = None) -> None:
    """Check the files ``entries`` record (``file``, ``sha256``, optional ``bytes``) in ``directory``.

    A missing file, another size or another hash is a ``DamagedError`` ending in ``fix``. Only files whose
    (size, mtime) differ from their last check are hashed, unless ``full`` (default: ``--verify``).
    """
    directory = Path(directory)
    full = full_verification() if full is None else full
    checked = _read_checked(directory)
    hashed = []
    for entry in entries:
        path = directory / entry["file"]
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DamagedError(f"{path} is missing; {fix}") from None
        if "bytes" in entry and stat.st_size != entry["bytes"]:
            raise DamagedError(
                f"{path} has {stat.st_size:,} bytes, not the {entry['bytes']:,} ltmia wrote (truncated or "
                f"replaced); {fix}"
            )
        if not full and checked.get(entry["file"]) == [stat.st_size, stat.st_mtime_ns, entry["sha256"]]:
            continue
        if file_sha256(path) != entry["sha256"]:
            raise DamagedError(
                f"{path} does not match its checksum (the SHA-256 ltmia recorded when writing it): damaged "
                f"or edited since; {fix}"
            )
        hashed.append(entry)
    if hashed:
        remember_checked(directory, hashed)


def verify_artefact(directory: Path, manifest: dict, fix: str, full: bool | None = None) -> None:
    """Check the files an artefact's manifest records; one written before checksums existed records none
    and passes (with a debug line)."""
    entries = manifest.get("files")
    if entries is None:
        log.debug("%s records no checksums (written by an older ltmia); not checked", directory)
        return
    verify_files(directory, entries, fix, full)


# --- writing a directory --------------------------------------------------------------------------------


@contextmanager
def building(
    out: Path,
    *,
    what: str = "artefact",
    replace: bool = False,
    resume: Callable[[Path], bool] | None = None,
    legacy: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield the scratch directory ``<out>.partial``, locked for this process; it becomes ``out`` when the
    block finishes without error (module docstring).

    ``out`` must not exist, unless ``replace``: then the finished ``out`` is swapped for the new one at the
    end (callers pass it only for an ltmia artefact of their own kind). Callers check ``read_manifest(out)``
    first and reuse finished work. A scratch directory left by a dead ltmia run is cleared, or kept when
    ``resume(scratch)`` says its contents can be continued; ``legacy(scratch)`` recognises a scratch
    directory of an ltmia from before markers by its contents. ``what`` names the artefact in messages.
    """
    out = Path(out)
    if out.exists() and not replace:
        raise OutputExistsError(
            f"{out} exists and is not a finished ltmia {what}; choose another output directory "
            "(ltmia does not overwrite what it did not write)"
        )
    partial = out.with_name(out.name + ".partial")
    lock = _claim(partial, out, resume, legacy)
    try:
        if out.exists() and not replace:
            raise BusyError(f"{out} was just finished by another ltmia process; run again to use it")
        yield partial
        _move_into_place(partial, out)  # the marker goes along: a run killed here leaves ltmia's scratch
        (out / MARKER).unlink()  # still locked; a writer waiting on it finds ``partial`` gone, then ``out``
    finally:
        os.close(lock)


def check_scratch(out: Path, legacy: Callable[[Path], bool] | None = None) -> None:
    """Refuse at once what ``building(out)`` would refuse only when a long job ends: another process
    writing ``out`` (``BusyError``), or a ``<out>.partial`` ltmia did not make (``legacy`` as there)."""
    partial = Path(out).with_name(Path(out).name + ".partial")
    marker = partial / MARKER
    try:
        lock = os.open(marker, os.O_RDWR)
    except OSError:
        if partial.exists() and not _recent(partial) and not (legacy is not None and legacy(partial)):
            raise OutputExistsError(
                f"{partial} exists but ltmia did not make it (no {MARKER} inside); ltmia removes only its "
                "own scratch directories: move it away, or choose another output directory"
            ) from None
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _refuse_busy(out, _read_marker(lock))
    finally:
        os.close(lock)  # closing releases a lock taken here


def _refuse_busy(out: Path, info: dict) -> None:
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('started', '?')}"
    raise BusyError(
        f"{out} is being written by another ltmia process ({who}); wait for it to finish, "
        "or choose another output directory"
    ) from None


def _move_into_place(partial: Path, out: Path) -> None:
    """Rename the finished scratch directory to ``out``; an ``out`` being replaced goes only after."""
    if not out.exists():
        os.replace(partial, out)
        return
    old = out.with_name(f"{out.name}.replaced-{RUN_ID[:12]}")
    os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old)


def _claim(
    partial: Path, out: Path, resume: Callable[[Path], bool] | None, legacy: Callable[[Path], bool] | None
) -> int:
    """Make ``partial`` (or take over a dead run's) and return the locked marker's file descriptor."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + MARKER_GRACE_SECONDS
    while True:
        try:
            partial.mkdir()
        except FileExistsError:
            lock = _take_over(partial, out, resume, legacy, deadline)
            if lock is not None:
                return lock
            time.sleep(0.05)
            continue
        lock = os.open(partial / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(lock, fcntl.LOCK_EX)  # new: at most a writer that looks at it for a moment holds it
        _write_marker(lock, out)
        return lock


def _take_over(
    partial: Path,
    out: Path,
    resume: Callable[[Path], bool] | None,
    legacy: Callable[[Path], bool] | None,
    deadline: float,
) -> int | None:
    """The locked marker of an existing ``partial`` left by a dead ltmia run (cleared or resumed); None to
    look again (another writer is between two steps); refusal when it is busy or not ltmia's."""
    if not partial.is_dir() and partial.exists():
        raise OutputExistsError(
            f"{partial} is a file ltmia did not make; move it away, or choose another output directory"
        )
    marker = partial / MARKER
    try:
        lock = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        if not partial.exists() or (time.monotonic() < deadline and _recent(partial)):
            return None  # finished and renamed meanwhile, or made a moment ago by a writer that is marking it
        if legacy is None or not legacy(partial):
            raise OutputExistsError(
                f"{partial} exists but ltmia did not make it (no {MARKER} inside); ltmia removes only its "
                "own scratch directories: move it away, or choose another output directory"
            ) from None
        try:  # an older ltmia's scratch directory: mark it, then take it over like any dead run's
            lock = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        fcntl.flock(lock, fcntl.LOCK_EX)
        _settle(lock, partial, out, resume, {})
        return lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        info = _read_marker(lock)
        os.close(lock)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        _refuse_busy(out, info)
    info = _read_marker(lock)
    try:
        same = os.fstat(lock).st_ino == marker.stat().st_ino
    except FileNotFoundError:
        same = False
    if not same or (not info and time.monotonic() < deadline):
        os.close(lock)  # finished and renamed meanwhile, or a writer that has not written its marker yet
        return None
    _settle(lock, partial, out, resume, info)
    return lock


def _settle(lock: int, partial: Path, out: Path, resume: Callable[[Path], bool] | None, info: dict) -> None:
    """Make a dead run's scratch directory this run's: continue it (``resume``) or empty it, then mark it."""
    if resume is not None and resume(partial):
        log.info("continuing the unfinished work of run %s in %s", info.get("run", "?")[:12], partial)
        for debris in partial.glob("*.tmp"):  # half-written files of the dead run
            debris.unlink()
    else:
        log.warning("removing unfinished work of an interrupted ltmia run in %s", partial)
        for entry in partial.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.name != MARKER:
                entry.unlink()
    _write_marker(lock, out)


def _recent(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < MARKER_GRACE_SECONDS
    except FileNotFoundError:
        return True


def _write_marker(lock: int, out: Path) -> None:
    record = {
        "ltmia": "scratch directory",
        "run": RUN_ID,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "out": str(out),
    }
    os.ftruncate(lock, 0)
    os.pwrite(lock, json.dumps(record).encode(), 0)


def _read_marker(lock: int) -> dict:
    try:
        record = json.loads(os.pread(lock, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
