"""The acks-under-load benchmark on the CPU with the tiny model: the real `fluxbot run` against
the fake Discord, every command acknowledged and queued, the figures reported. Structure only;
no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


def test_acks_runs_the_real_bot_and_reports_the_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "acks.json"
    code = main(
        [
            "acks",
            "--commands", "4",
            "--users", "2",
            "--spread-s", "0.2",
            "--work-dir", str(tmp_path / "work"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["commands"] == 4 and result["acks_over_3s"] == 0
    for key in ("ack_s", "queued_message_s"):
        assert set(result[key]) == {"p50", "p95", "p99", "max"}
        assert all(v is not None and v >= 0 for v in result[key].values()), key
    assert result["tracebacks_in_log"] == 0
    assert "ack (callback answered): p50" in capsys.readouterr().out
