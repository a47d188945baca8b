"""The time-to-image benchmark on the CPU with the tiny model: the real `fluxbot run` against the
fake Discord, every scenario measured and reported. Structure only; no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main
from bench.e2e import IMAGE_OPS, MARKS, STAGES, image_op_presses, percentile
from fluxbot.core.requests import ASPECT_PRESETS


def test_percentiles_are_nearest_rank() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0 and percentile(values, 95) == 5.0
    assert percentile([], 50) is None


def test_e2e_runs_the_real_bot_and_reports_every_mark(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "e2e",
            "--arch", "tiny",
            "--device", "cpu",
            "--gpus", "cpu",
            "--profiles", "eager",
            "--steps", "1",
            "--single", "1",
            "--count4", "1",
            "--burst", "3",
            "--burst-users", "2",
            "--mixed", "9",
            "--image-ops", "2",
            "--work-dir", str(tmp_path / "work"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "e2e.json").read_text())
    eager = results["profiles"]["eager"]
    assert eager["exit_code"] == 0 and eager["tracebacks_in_log"] == 0
    assert set(eager["scenarios"]) == {"single", "count4", "burst", "mixed", "images"}
    burst = eager["scenarios"]["burst"]
    assert burst["summary"]["jobs"] == 3 and len({j["job_id"] for j in burst["jobs"]}) == 3
    for name, scenario in eager["scenarios"].items():
        if name == "images":
            continue  # button presses: checked below
        for job in scenario["jobs"]:
            for key in ("deferred", "queued_message", "result_posted", *STAGES):
                assert job[key] is not None and job[key] >= 0, key
            # The user sees each step in order: deferred, queued, then the result.
            assert job["deferred"] <= job["queued_message"] <= job["result_posted"]
        assert all(scenario["summary"][k]["n"] for k in ("deferred", "result_posted"))
    assert set(MARKS) <= set(eager["scenarios"]["single"]["summary"])
    mixed = eager["scenarios"]["mixed"]
    # Every aspect preset, counts 1-4: the jobs' images come in the shapes asked for.
    assert {(j["aspect"], j["count"]) for j in mixed["jobs"]} == {
        (aspect, 1 + (i // 8) % 4)
        for i, aspect in zip(range(9), [*ASPECT_PRESETS] * 2, strict=False)
    }
    assert mixed["recompiles"] == 0 and mixed["slowest_vs_shape_median"] >= 1.0
    images = eager["scenarios"]["images"]
    # One result's image action, pressed twice: two new jobs, each posted with its stages.
    assert [j["op"] for j in images["jobs"]] == [IMAGE_OPS[0]] * 2
    assert len({j["job_id"] for j in images["jobs"]} | {None}) == 3
    for job in images["jobs"]:
        assert job["result_posted"] > 0
        assert all(job[stage] is not None for stage in ("queue", "text", "denoise", "decode"))
    assert images["recompiles"] == 0
    table = (out / "e2e.md").read_text()
    assert "| eager | burst | 3 |" in table


def test_image_presses_go_through_every_operation_twice() -> None:
    # The GPU run pressed only the first operation 16 times: the operation advanced only
    # after every parent had had one.
    parents = [f"p{i}" for i in range(8)]
    presses = image_op_presses(parents, 2 * len(IMAGE_OPS))
    assert sorted(op for _, op in presses) == sorted(IMAGE_OPS * 2)
    assert {parent for parent, _ in presses} == set(parents)
    assert presses[: len(IMAGE_OPS)] == presses[len(IMAGE_OPS) :]
    assert image_op_presses(parents, 2) == [("p0", IMAGE_OPS[0])] * 2
    assert len(image_op_presses(parents, 3)) == 3
