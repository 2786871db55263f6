"""Artefacts are directories with a JSON manifest (the ``save_pretrained`` idea), written atomically.

A stage writes into ``<out>.partial`` and renames it to ``<out>`` only when everything, manifest last, is
on disk; so a directory named ``<out>`` with a manifest is always complete, a crash never leaves a
half-written artefact that looks finished, and an existing user directory is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from ltmia.errors import OutputExistsError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
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


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (``write_text``)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True))


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a complete artefact, or None when ``directory`` is not one."""
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``out`` when the block finishes without error.

    Refuses an existing ``out``: callers check ``read_manifest(out)`` first and skip finished work.
    A scratch directory left by a crashed run is ltmia's own and is replaced, with a log line.
    """
    out = Path(out)
    if out.exists():
        raise OutputExistsError(
            f"{out} exists and is not a finished ltmia artefact; choose another output directory "
            "or remove it yourself"
        )
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        log.warning("replacing unfinished work in %s from an interrupted run", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    yield partial
    os.replace(partial, out)
