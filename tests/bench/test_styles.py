"""The styles benchmark's plumbing on the CPU with the tiny model: it runs each step and writes
its JSON. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench.styles import main


def test_tiny_styles_run_measures_every_lora(tmp_path: Path) -> None:
    # Regression: the LoRA files' byte count overwrote the image size, so the first image asked
    # for a canvas of ~10^5 pixels a side (on the H200: a CPU allocation of 8.5 PB).
    out = tmp_path / "out"
    code = main(
        [
            "--out", str(out),
            "--arch", "tiny",
            "--device", "cpu",
            "--profiles", "eager",
            "--lora-dir", str(tmp_path / "loras"),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "styles.json").read_text())
    (profile,) = results["profiles"]
    assert "error" not in profile, profile
    assert set(profile["lora_s_per_image"]) == {
        str(tmp_path / "loras" / "r16-1.safetensors"),
        str(tmp_path / "loras" / "r64-2.safetensors"),
    }
    assert len(profile["report"]["loaded"]) == 3
    assert set(results["lora_files_mib"]) == {
        "r16-1.safetensors",
        "r64-2.safetensors",
        "r16-3.safetensors",
    }
