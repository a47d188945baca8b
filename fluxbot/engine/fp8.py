"""fp8 (e4m3) linears: per-channel weight scales, row-wise dynamic activation scales.

`dynamic` runs the matmul on the fp8 tensor cores through `torch._scaled_mm` (Ada/Hopper and
later); it is written as plain tensor code so `torch.compile(fullgraph=True)` fuses the activation
quantisation into the op before it. `weight_only` keeps the weights in fp8 and multiplies in the
activation dtype: it only saves memory, and works on any device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
# _scaled_mm needs the inner and outer dimensions to be multiples of 16.
SCALED_MM_ALIGN = 16
# fp8 tensor cores: Ada (8.9) and Hopper (9.0) onwards.
FP8_MIN_CAPABILITY = (8, 9)

Fp8Mode = Literal["dynamic", "weight_only"]


def quantize_rowwise(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 copy of a 2-D tensor with one fp32 scale per row (absmax / 448); returns (q, scale)."""
    amax = t.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / FP8_MAX
    q = (t.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def scaled_mm_supported(device: torch.device | str) -> bool:
    """Whether row-wise scaled fp8 matmuls run on this device (a tiny probe, run once per load)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
            return False
    try:
        a = torch.ones(16, 32, device=device).to(FP8_DTYPE)
        b = torch.ones(16, 32, device=device).to(FP8_DTYPE)
        torch._scaled_mm(
            a,
            b.t(),
            scale_a=torch.ones(16, 1, device=device),
            scale_b=torch.ones(1, 16, device=device),
            out_dtype=torch.bfloat16,
        )
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        log.debug("fp8 _scaled_mm not available on %s: %s", device, exc)
        return False
    return True


class Fp8Linear(nn.Module):
    """A drop-in for `nn.Linear` holding fp8 weights (`qweight`, `weight_scale` per channel)."""

    def __init__(
        self,
        qweight: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None,
        mode: Fp8Mode,
        compute_dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.mode: Fp8Mode = mode
        self.compute_dtype = compute_dtype
        self.qweight = nn.Parameter(qweight, requires_grad=False)
        # Stored as (1, out): the layout _scaled_mm wants for the second operand's scales.
        self.weight_scale = nn.Parameter(weight_scale.reshape(1, -1), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, mode: Fp8Mode, device: torch.device | str | None = None
    ) -> Fp8Linear:
        weight = linear.weight.detach()
        if device is not None:
            weight = weight.to(device)
        compute_dtype = weight.dtype
        qweight, scale = quantize_rowwise(weight)
        bias = None
        if linear.bias is not None:
            bias = linear.bias.detach().to(weight.device, compute_dtype)
        return cls(qweight, scale, bias, mode, compute_dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return (self.qweight.to(torch.float32) * self.weight_scale.t()).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "weight_only":
            return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)
        xq, x_scale = quantize_rowwise(x.reshape(-1, self.in_features))
        return self.matmul_quantized(xq, x_scale, x.shape[:-1], x.dtype)

    def matmul_quantized(
        self,
        xq: torch.Tensor,
        x_scale: torch.Tensor,
        leading: tuple[int, ...] | torch.Size,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        """The fp8 matmul of rows already quantised (`quantize_rowwise`'s output, or a fused
        kernel's), reshaped to `leading` + (out_features,)."""
        # Fast accumulation: 1330-1400 vs 1160-1230 TFLOP/s at FLUX's shapes on an H200
        # (bench probe), the inference setting torchao uses too.
        out = torch._scaled_mm(
            xq,
            self.qweight.t(),
            scale_a=x_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=out_dtype,
            use_fast_accum=True,
        )
        return out.reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"


def is_dynamic_fp8(linear: object) -> TypeGuard[Fp8Linear]:
    """A plain fp8 linear that quantises its input per call (not one a LoRA wraps)."""
    return type(linear) is Fp8Linear and linear.mode == "dynamic"


def fp8_compatible(linear: nn.Linear) -> bool:
    return linear.in_features % SCALED_MM_ALIGN == 0 and linear.out_features % SCALED_MM_ALIGN == 0


@dataclass(frozen=True, slots=True)
class QuantizeReport:
    """How many linears were converted, and the weight bytes before and after."""

    converted: int
    skipped: int
    bytes_before: int
    bytes_after: int

    @property
    def saved_gib(self) -> float:
        return (self.bytes_before - self.bytes_after) / 2**30


ModeChooser = Callable[[str, nn.Linear], Fp8Mode | None]


def quantize_linears_(
    model: nn.Module, choose: ModeChooser, device: torch.device | str | None = None
) -> QuantizeReport:
    """Replace, in place, each `nn.Linear` for which `choose(name, linear)` returns a mode.

    With `device`, each weight is moved there before it is quantised, so a model kept on the CPU
    never needs its bf16 weights on the accelerator all at once.
    """
    targets: list[tuple[nn.Module, str, str, nn.Linear, Fp8Mode]] = []
    skipped = 0
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            if type(child) is not nn.Linear:
                continue
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            mode = choose(name, child)
            if mode is None:
                continue
            if not fp8_compatible(child):
                skipped += 1
                continue
            targets.append((parent, child_name, name, child, mode))
    before = after = 0
    for parent, child_name, _name, linear, mode in targets:
        before += linear.weight.numel() * linear.weight.element_size()
        replacement = Fp8Linear.from_linear(linear, mode, device)
        after += replacement.qweight.numel() + replacement.weight_scale.numel() * 4
        setattr(parent, child_name, replacement)
    return QuantizeReport(len(targets), skipped, before, after)


FP8_CHECK_TOLERANCE = 0.08
"""Largest relative error of an fp8 linear against its bf16 original accepted by the load-time
check (FLUX's linears measure ~3.7 % on an H200; a broken kernel or outlier-ridden weights are
far above)."""


@dataclass(frozen=True, slots=True)
class Fp8Check:
    """The load-time fp8 quality check: the worst relative error over the sampled linears."""

    checked: int
    worst_error: float
    worst_name: str
    tolerance: float = FP8_CHECK_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.checked > 0 and self.worst_error <= self.tolerance  # NaN fails

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{verdict}: worst relative error {self.worst_error:.3g} ({self.worst_name}) over "
            f"{self.checked} linears, allowed {self.tolerance:g}"
        )


def check_fp8_linears(
    model: nn.Module,
    choose: ModeChooser,
    device: torch.device | str | None = None,
    *,
    samples: int = 8,
    rows: int = 256,
    seed: int = 0,
) -> Fp8Check:
    """Compare fp8 against bf16 for a spread of the linears `choose` would convert, on the
    loaded weights and random activations, before any is converted."""
    chosen = [
        (name, module)
        for name, module in model.named_modules()
        if type(module) is nn.Linear
        and choose(name, module) == "dynamic"
        and fp8_compatible(module)
    ]
    if not chosen:
        return Fp8Check(0, float("nan"), "(none)")
    step = max(1, len(chosen) // samples)
    generator = torch.Generator().manual_seed(seed)
    worst, worst_name = 0.0, ""
    for name, linear in chosen[::step][:samples]:
        if math.isnan(worst):
            break
        weight = linear.weight.detach()
        target = torch.device(device) if device is not None else weight.device
        x = torch.randn(rows, linear.in_features, generator=generator).to(target, weight.dtype)
        with torch.inference_mode():
            reference = x.float() @ weight.to(target).float().t()
            got = Fp8Linear.from_linear(linear, "dynamic", target)(x).float()
            if linear.bias is not None:
                got = got - linear.bias.detach().to(target).float()
            error = float((got - reference).norm() / reference.norm().clamp(min=1e-12))
        if math.isnan(error) or error > worst:  # a NaN is the worst there is
            worst, worst_name = error, name
    return Fp8Check(len(chosen[::step][:samples]), worst, worst_name)


def _is_modulation(name: str) -> bool:
    # AdaLayerNorm projections (`norm1.linear`, `norm.linear`...): one row per image, so fp8
    # compute gains nothing there; they are the only linears named under a `norm`.
    return ".norm" in name or name.startswith("norm")


def flux_transformer_chooser(
    *, dynamic: bool, modulation: bool, down_projections: bool = True
) -> ModeChooser:
    """Which FLUX transformer linears to convert: the blocks' projections and MLPs.

    `dynamic` picks fp8 compute for the big token-wise linears (else weight-only); `modulation`
    also stores the per-image AdaLayerNorm projections in fp8 (weight-only, to save memory);
    `down_projections=False` leaves linears with in_features >= 4 x out_features in bf16 (the
    MLP down-projections, where H100/H200 row-wise fp8 matmuls measured no faster than bf16).
    """

    def choose(name: str, linear: nn.Linear) -> Fp8Mode | None:
        if not name.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            return None
        if ".lora_" in name:
            return None  # a LoRA's low-rank matrices stay in bf16 beside the fp8 base layer
        if _is_modulation(name):
            return "weight_only" if modulation else None
        if not down_projections and linear.in_features >= 4 * linear.out_features:
            return None
        return "dynamic" if dynamic else "weight_only"

    return choose


def t5_chooser(name: str, linear: nn.Linear) -> Fp8Mode | None:
    """T5 encoder linears, weight-only; `wo` is left alone because T5 casts its input to
    `wo.weight.dtype`, which an fp8 weight would turn into an fp8 activation."""
    if name.endswith(".wo") or "encoder.block." not in name:
        return None
    return "weight_only"
