"""bench kernels: the GEMM-epilogue check it runs on the card, here on the CPU."""

from __future__ import annotations

from bench.kernels import PHASE_CHANGES, epilogue_check


def test_the_epilogue_check_tells_tanh_gelu_from_erf_and_measures_the_split() -> None:
    check = epilogue_check(rows=64, width=32, hidden=96, device="cpu")
    assert check["gelu_vs_tanh_max_abs"] == 0.0  # the CPU path is the tanh reference itself
    assert check["gelu_vs_erf_max_abs"] > 0.0
    # two bf16 GEMMs against one: within bf16 rounding of the outputs' size
    assert check["concat_linear_max_abs"] <= check["concat_linear_out_max_abs"] * 2**-6


def test_each_comparison_phase_switches_off_one_existing_lever() -> None:
    from dataclasses import fields

    from fluxbot.engine.speed import SpeedPlan

    names = {f.name for f in fields(SpeedPlan)}
    for changes in PHASE_CHANGES.values():
        assert set(changes) <= names and not any(changes.values())
