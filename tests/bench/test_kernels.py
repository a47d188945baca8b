"""bench kernels: the op checks it runs on the card, here on the CPU."""

from __future__ import annotations

from bench.kernels import PHASE_CHANGES, epilogue_check, qk_rope_check


def test_the_epilogue_check_tells_tanh_gelu_from_erf_and_measures_the_split() -> None:
    check = epilogue_check(rows=64, width=32, hidden=96, device="cpu")
    assert check["gelu_vs_tanh_max_abs"] == 0.0  # the CPU path is the tanh reference itself
    assert check["gelu_vs_erf_max_abs"] > 0.0
    # two bf16 GEMMs against one: within bf16 rounding of the outputs' size
    assert check["concat_linear_max_abs"] <= check["concat_linear_out_max_abs"] * 2**-6


def test_each_comparison_phase_switches_one_lever_of_its_profile() -> None:
    from fluxbot.config import SpeedProfile
    from fluxbot.engine.speed import plan_speed
    from tests.engine.features import HOPPER

    for phase, changes in PHASE_CHANGES.items():
        profile = SpeedProfile.COMPILE if phase.startswith("compile") else SpeedProfile.FAST
        plan = plan_speed(profile, HOPPER)
        assert len(changes) == 1
        for lever, value in changes.items():
            assert getattr(plan, lever) is not value, phase  # exists, and differs from the plan


def test_the_qk_rope_check_compares_the_op_with_the_torch_ops_it_replaces() -> None:
    check = qk_rope_check(text=3, image=5, heads=2, width=16, device="cpu")
    # on the CPU the op is the torch ops themselves
    assert check["double_max_abs"] == check["single_max_abs"] == 0.0
    assert check["double_share_differing"] == 0.0
    for case in ("double", "single"):
        for path in ("kernel", "eager", "inductor"):
            assert check[f"{case}_{path}_us"] > 0


def test_kernels_fall_in_the_groups_the_reports_name() -> None:
    from bench.kernels import _group

    cases = {
        "_gelu_cat_quantize_rows": "fused quantise (fluxbot)",
        "_qk_norm_rope_rows": "q/k norm + RoPE (fluxbot)",
        "triton_red_fused_abs_amax_gelu_view_8": "triton reduction (looped)",
        "triton_per_fused_native_group_norm_3": "triton persistent reduction",
        "triton_poi_fused_silu_0": "triton pointwise",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7": "attention",
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "void cudnn::engines_precompiled::nhwcToNchwKernel<__nv_bfloat16>": "other cudnn",
        "nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_ovscale_bias_TNT": "fp8 gemm",
        "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_gelubias_TNT": "bf16 gemm",
        "Memcpy DtoH (Device -> Pinned)": "copies",
        "void at::native::elementwise_kernel<128, 4>": "other aten",
    }
    assert {name: _group(name) for name in cases} == cases
