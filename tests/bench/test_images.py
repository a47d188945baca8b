"""The image-operations bench's report: ratios against stock and where each op's time went."""

from __future__ import annotations

from pathlib import Path

from bench.images import write_markdown


def test_the_report_gives_ratios_stages_and_kernel_groups(tmp_path: Path) -> None:
    profile = {
        "wall_ms": 300.0,
        "kernel_ms": 240.0,
        "gaps_ms": 60.0,
        "groups_ms": {"fp8 gemm": 120.0, "convolution": 19.4, "copies": 0.2},
        "top_kernels": [],
    }
    data = {
        "meta": {"device": "NVIDIA H200", "torch": "2.11", "diffusers": "0.42.1"},
        "runs": {
            "stock": {"vary_0.35": {"s": 0.6, "peak_gib": 33.8}},
            "fast": {
                "vary_0.35": {
                    "s": 0.3,
                    "peak_gib": 25.2,
                    "stages_s": {"text_encode": 0.02, "denoise": 0.2, "decode": 0.05},
                    "profile": profile,
                }
            },
        },
        "memory": {},
        "notes": ["a note"],
    }
    path = tmp_path / "images.md"
    write_markdown(data, path)
    text = path.read_text()
    assert "| vary_0.35 | 0.600, 33.8 GiB | 0.300 (2.00×), 25.2 GiB |" in text
    assert "| text | not run | not run |" in text
    line = next(row for row in text.splitlines() if row.startswith("- fast vary_0.35"))
    assert "stages text_encode 20, denoise 200, decode 50" in line
    assert "kernels 240 (fp8 gemm 120, convolution 19), gaps 60" in line  # groups under 1 ms out
    assert "- a note" in text
