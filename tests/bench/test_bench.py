"""The benchmark's plumbing on the CPU with the tiny model: it runs, writes JSON and Markdown,
and its queue mix is what the README says. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main
from bench.report import FLOOR_S_1024, render_markdown
from bench.runs import queue_jobs
from fluxbot.core.requests import ASPECT_PRESETS


def test_queue_mix_covers_presets_counts_and_rerolls() -> None:
    jobs = queue_jobs(20)
    assert len(jobs) == 20
    assert {(j["width"], j["height"]) for j in jobs} == set(ASPECT_PRESETS.values())
    assert {j["count"] for j in jobs} == {1, 2, 4}
    prompts = [j["prompt"] for j in jobs]
    assert len(set(prompts)) == 15  # every fourth job rerolls the one before it
    assert len({j["seed"] for j in jobs}) == 20


def test_tiny_run_writes_results(tmp_path: Path) -> None:
    code = main(
        [
            "run",
            "--arch", "tiny",
            "--device", "cpu",
            "--profiles", "stock,eager,compile",
            "--cases", "256x2",
            "--repeats", "1",
            "--no-queue",
            "--first-size", "128",
            "--no-warm-presets",
            "--work-dir", str(tmp_path / "work"),
            "--out", str(tmp_path / "out"),
            "--tag", "test",
        ]
    )  # fmt: skip
    assert code == 0
    (json_path,) = (tmp_path / "out").glob("*-test.json")
    results = json.loads(json_path.read_text())
    assert results["stock"]["cases"]["256x2"]["runs"] == 1
    eager = results["profiles"]["eager"]
    assert eager["cases"]["256x2"]["s_per_image"] > 0
    # compile on a CPU falls back to eager, and the results say why
    assert results["profiles"]["compile"]["speed"]["profile"] == "eager"
    assert results["profiles"]["compile"]["speed"]["reasons"]
    assert (tmp_path / "work" / "model-tiny" / "model_index.json").is_file()
    markdown = json_path.with_suffix(".md").read_text()
    assert "| stock diffusers |" in markdown and "| fluxbot eager |" in markdown


def test_markdown_marks_missing_numbers() -> None:
    # Only one number measured: no stock run, no batch or 512² case, no queue, no stages.
    profiles = {"fast": {"cases": {"1024x1": {"s_per_image": 0.5}}}}
    text = render_markdown({"environment": {"card": "X"}, "stock": {}, "profiles": profiles})
    assert text.startswith("# fluxbot benchmark: X")
    rows = [line for line in text.splitlines() if line.startswith("| fluxbot fast |")]
    speed, stages = ([cell.strip() for cell in row.strip("|").split("|")][1:] for row in rows)
    assert speed[0] == "0.500" and speed[2] == f"{FLOOR_S_1024 / 0.5 * 100:.0f}"
    assert speed[1] == "–" and speed[3:] == ["–"] * 8  # × stock, and all that was not measured
    assert stages == ["–"] * 4


def test_scale_runs_one_device_then_all(tmp_path: Path) -> None:
    code = main(
        [
            "scale",
            "--arch", "tiny",
            "--devices", "cpu,cpu",
            "--jobs", "4",
            "--size", "128",
            "--work-dir", str(tmp_path / "work"),
            "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    assert code == 0
    (json_path,) = (tmp_path / "out").glob("*-scale.json")
    result = json.loads(json_path.read_text())
    assert result["one_device"]["jobs_per_device"] == {"cpu": 4}
    assert sum(result["all_devices"]["jobs_per_device"].values()) == 4
    assert not result["all_devices"]["failed"] and result["speedup"] > 0
    assert "Speed-up" in json_path.with_suffix(".md").read_text()


def test_gap_timeline_splits_the_idle_between_two_jobs() -> None:
    from bench.gaps import Timeline

    timeline = Timeline()
    timeline.jobs = [
        {
            "generate": 0.0,
            "first_work": 0.001,
            "decode_end": 1.000,
            "pil_end": 1.002,
            "generate_end": 1.003,
        },
        {"generate": 1.004, "first_work": 1.006, "decode_end": 2.0},
    ]
    segments = timeline.segments_ms()
    assert round(segments["decode_end -> pil_end"], 3) == 2.0
    assert round(segments["next_generate -> next_first_work"], 3) == 2.0
    assert round(segments["idle total"], 3) == 6.0


def test_fp8_quality_probe_compares_fp8_with_bf16_on_the_same_seed() -> None:
    import torch

    from bench.probe import probe_fp8_quality
    from fluxbot.engine.fp8 import Fp8Linear, scaled_mm_supported
    from fluxbot.engine.model_builder import build_tiny_pipeline

    if not scaled_mm_supported("cpu"):
        import pytest

        pytest.skip("this torch has no CPU _scaled_mm")
    pipe = build_tiny_pipeline(torch.bfloat16)
    result = probe_fp8_quality(pipe, lambda _: None, side=64)
    assert result["fp8_linears"] > 0
    assert isinstance(pipe.transformer.transformer_blocks[0].attn.to_qkv, Fp8Linear)
    # fp8 changes the numbers, a little.
    assert 0 < result["transformer_contribution_rel_diff"] < 0.1
    assert result["image_psnr_db"] > 30
