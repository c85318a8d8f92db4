import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TESTS = os.path.join(ROOT, "tests")
if TESTS not in sys.path:
    # Test support code (tests/support: the fake engine, tiny projects) is imported as
    # `support`.  pytest's default import mode already puts tests/ on the path (that is how
    # `from conftest import ...` works); this keeps it so under other import modes.
    sys.path.insert(0, TESTS)
XLSPEC = [sys.executable, "-m", "xlspec.cli"]


def update_golden() -> bool:
    """UPDATE_GOLDEN=1 rewrites expected files instead of comparing (review the git diff)."""
    return os.environ.get("UPDATE_GOLDEN") == "1"


def check_golden(path: str, actual: str) -> None:
    if update_golden() or not os.path.exists(path):
        if not update_golden():
            pytest.fail(f"missing golden file {os.path.relpath(path, ROOT)}; run with UPDATE_GOLDEN=1 to create it")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(actual)
        return
    with open(path, encoding="utf-8") as f:
        expected = f.read()
    assert actual == expected, f"{os.path.relpath(path, ROOT)} differs (UPDATE_GOLDEN=1 rewrites it)"


@pytest.fixture
def in_dir():
    """Run a block with a given working directory, restoring it after."""
    import contextlib

    @contextlib.contextmanager
    def chdir(path):
        old = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(old)

    return chdir


@pytest.fixture(scope="session")
def builtin_model():
    """The builtin model, in ``$XLSPEC_TEST_CACHE`` (default: the git-ignored
    ``<repo>/.xlspec-cache``), exported as ``XLSPEC_CACHE`` for the session: converted at
    most once, then reused."""
    from xlspec.runtime.models import resolve_model

    patch = pytest.MonkeyPatch()
    patch.setenv("XLSPEC_CACHE", os.environ.get("XLSPEC_TEST_CACHE", os.path.join(ROOT, ".xlspec-cache")))
    yield resolve_model("builtin:smollm2-135m-instruct")
    patch.undo()


@pytest.fixture(autouse=True)
def _shipped_engines_only(request):
    """Compiler tests (diagnostics with their "did you mean" lists, the generated reference)
    see the engines xlspec ships, not the test engines that runtime tests register
    (tests/support/fake_engine.py); runtime tests keep them."""
    if os.path.join("tests", "runtime") in str(request.node.path):
        yield
        return
    from xlspec.runtime.engines import ENGINES

    ENGINES.names()  # load the shipped ones first
    entries = ENGINES._entries
    saved = dict(entries)
    for name in [n for n, info in saved.items() if not getattr(info.load, "__module__", "").startswith("xlspec.")]:
        del entries[name]
    try:
        yield
    finally:
        entries.clear()
        entries.update(saved)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster for a test module (two CPUs, one GPU as Ray counts them: no
    device is used, the fake engine takes none).  A cluster someone else started is used and
    left running."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # "local": a new cluster of our own, even where `ray start` left one running
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
