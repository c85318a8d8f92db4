"""A command-line driver whose ``--engine slow`` answers as the fake engine does, but slowly:
for tests that kill ``xlspec run`` in the middle (SIGKILL, SIGINT) from another process.

``driver(folder, delay, slow_when=())`` writes the script and returns the command that runs
it (``[python, script]``; append ``xlspec`` arguments).  Each request takes ``delay``
seconds, or only those whose prompt holds one of ``slow_when`` (a judge stage slow, its
generations fast)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys, time
sys.path[:0] = [{tests!r}]
from support.fake_engine import ANSWERS, FakeEngine
from xlspec.runtime.engines.base import EngineInfo

SLOW_WHEN = {slow_when!r}


class SlowEngine:
    name = "slow"

    def __init__(self, config):
        self.fake = FakeEngine(config)
        self.progress = None

    def run(self, batch):
        out = []
        for r in batch:
            if not SLOW_WHEN or any(marker in r.prompt for marker in SLOW_WHEN):
                time.sleep({delay})
            out.append(self.fake._answer(r))
            if self.progress is not None:
                self.progress(1)
        return out

    def close(self):
        pass


EngineInfo(name="slow", summary="the fake engine, slowly", load=SlowEngine, answers=ANSWERS, chunk=256).register()
from xlspec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def driver(folder: Path, delay: float, slow_when: tuple[str, ...] = ()) -> list[str]:
    script = Path(folder) / f"driver_{str(delay).replace('.', '_')}_{len(slow_when)}.py"
    script.write_text(SCRIPT.format(tests=TESTS, delay=delay, slow_when=tuple(slow_when)), encoding="utf-8")
    return [sys.executable, str(script)]
