"""examples/watch_training_loop.py runs as a script, and its log reads back as its records."""

from __future__ import annotations

import subprocess
import sys

from gradflow.track import read_watch_log
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "watch_training_loop.py"


def test_the_example_trains_watches_and_writes_a_log_show_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "runs" / "flow.jsonl"
    out = subprocess.run([sys.executable, str(EXAMPLE), str(log)], capture_output=True, text=True,
                         check=True, cwd=tmp_path, timeout=300)
    assert "Watch(4 junctions, every 20, 10 measured steps up to step 180, flagged: none)" in out.stdout
    shown = read_watch_log(log)
    assert shown.junctions == ("blocks.0", "blocks.1", "blocks.2", "blocks.3")
    assert shown.steps() == list(range(0, 200, 20))
    assert all(r.complete and r.loss is not None for r in shown.records)
