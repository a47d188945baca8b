"""LoRAs on a FLUX pipeline: read and check them, load them through diffusers, switch per batch.

Reading goes through diffusers' `FluxPipeline.lora_state_dict` (it converts kohya, xlabs and other
formats to diffusers' names); each module's alpha/rank scale is folded into its down matrix so
every adapter loads at scale 1. fluxbot fuses each attention's q/k/v into one matmul
(fluxbot.engine.speed), so q/k/v LoRAs are merged into one LoRA on the fused layer: the down
matrices stacked, the up matrices block-diagonal, which is the same update exactly.

A replica holds its LoRAs in one of two ways (`LoraAdapters`):
- adapters (eager, everything resident): each LoRA is a named diffusers adapter
  (`load_lora_weights(adapter_name=...)`), several loaded at once, chosen per batch with
  `set_adapters(name, weight)`; `disable_lora()` for jobs without one.
- slot (compiled, fp8 or offloaded weights): one adapter, padded to the largest rank the styles
  need, is injected before fp8 conversion and compilation; a switch copies the chosen LoRA's
  weights into it in place (diffusers' LoRA hotswap), so compiled graphs stay valid and the fp8
  base layers stay fp8 with the low-rank update beside them. Loaded LoRAs wait on the device,
  ready to copy in.
Both keep at most `capacity` LoRAs loaded, unloading the least recently used.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fluxbot.core.styles import LoraSpec

log = logging.getLogger(__name__)

SLOT = "fluxbot_style"
DEFAULT_CAPACITY = 4
PREFIX = "transformer."
# fluxbot.engine.speed.fuse_qkv_ replaces these triples with one layer each.
FUSED_GROUPS: dict[str, tuple[str, str, str]] = {
    "to_qkv": ("to_q", "to_k", "to_v"),
    "to_added_qkv": ("add_q_proj", "add_k_proj", "add_v_proj"),
}
_PART_OF = {
    part: (fused, i) for fused, parts in FUSED_GROUPS.items() for i, part in enumerate(parts)
}


class LoraError(ValueError):
    """A LoRA that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class LoraFile:
    """A LoRA's weights in FLUX's (unfused) transformer module names, scale folded in:
    module -> (down [rank, in], up [out, rank])."""

    source: str
    pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def rank(self) -> int:
        return max(down.shape[0] for down, _ in self.pairs.values())

    @property
    def nbytes(self) -> int:
        return sum(
            d.numel() * d.element_size() + u.numel() * u.element_size()
            for d, u in self.pairs.values()
        )


def _module_scale(
    module: str, rank: int, alphas: Mapping[str, Any], metadata: Mapping[str, Any]
) -> float:
    """alpha / rank for one module: kohya-style `.alpha` keys, else the peft metadata diffusers
    saves with a LoRA, else 1 (alpha == rank, diffusers' convention when none is stored)."""
    alpha = alphas.get(f"{PREFIX}{module}.alpha", alphas.get(f"{module}.alpha"))
    if alpha is not None:
        return float(alpha) / rank
    if metadata:
        pattern = metadata.get("alpha_pattern") or {}
        for key, value in pattern.items():
            if module == key.lstrip("^") or module.endswith("." + key.lstrip("^")):
                return float(value) / rank
        if "lora_alpha" in metadata:
            ranks = metadata.get("rank_pattern") or {}
            module_rank = next(
                (v for k, v in ranks.items() if module.endswith(k.lstrip("^"))), metadata.get("r")
            )
            return float(metadata["lora_alpha"]) / float(module_rank or rank)
    return 1.0


def _transformer_metadata(metadata: Any) -> dict[str, Any]:
    if not metadata:
        return {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if "transformer" in metadata and isinstance(metadata["transformer"], Mapping):
        return dict(metadata["transformer"])
    own = {k.removeprefix(PREFIX): v for k, v in metadata.items() if k.startswith(PREFIX)}
    return own or dict(metadata)


def read_lora(source: str) -> LoraFile:
    """Read a LoRA (a local .safetensors file or a hub id) into FLUX transformer module names."""
    from diffusers import FluxPipeline

    local = Path(source).expanduser()
    looks_local = source.endswith(".safetensors") or local.is_absolute() or source[:1] == "."
    if looks_local and not local.is_file():
        raise LoraError(f"file {source} does not exist")
    try:
        state_dict, alphas, metadata = FluxPipeline.lora_state_dict(
            str(local) if local.exists() else source,
            return_alphas=True,
            return_lora_metadata=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise LoraError(f"cannot read {source}: {type(exc).__name__}: {exc}") from None
    other = sorted({k.split(".")[0] for k in state_dict if not k.startswith(PREFIX)})
    if other:
        raise LoraError(
            f"has weights for {', '.join(other)}; only LoRAs of FLUX's transformer are supported"
        )
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key.removeprefix(PREFIX)
        if name.endswith(".lora_A.weight"):
            downs[name.removesuffix(".lora_A.weight")] = value
        elif name.endswith(".lora_B.weight"):
            ups[name.removesuffix(".lora_B.weight")] = value
        else:
            raise LoraError(f"key {key} is not a LoRA weight this engine applies (lora_A/lora_B)")
    if not downs:
        raise LoraError("has no LoRA weights")
    if set(downs) != set(ups):
        odd = sorted(set(downs) ^ set(ups))[0]
        raise LoraError(f"module {odd} has only one of its two LoRA matrices")
    meta = _transformer_metadata(metadata)
    pairs = {}
    for module, down in downs.items():
        up = ups[module]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise LoraError(
                f"module {module}: matrices {tuple(down.shape)} and {tuple(up.shape)} do not "
                "form a LoRA"
            )
        scale = _module_scale(module, down.shape[0], alphas or {}, meta)
        pairs[module] = (down.float() * scale, up.float())
    return LoraFile(source, pairs)


def flux_linear_shapes(transformer: nn.Module) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer of a FLUX transformer, by module name."""
    shapes = {}
    for name, module in transformer.named_modules():
        if isinstance(module, nn.Linear):
            shapes[name] = (module.in_features, module.out_features)
    return shapes


def meta_transformer(config: Mapping[str, Any] | None = None) -> Any:
    """A FLUX transformer on the meta device (no memory, no weights): its layer names and shapes.
    No config: FLUX.1's own dimensions (diffusers' defaults)."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        return FluxTransformer2DModel(**dict(config or {}))


def check_lora_fits(lora: LoraFile, shapes: Mapping[str, tuple[int, int]]) -> None:
    """Raise LoraError naming the first module the LoRA has that FLUX's transformer lacks, or
    whose shapes differ (a LoRA for another model, e.g. SDXL or FLUX.2)."""
    for module, (down, up) in sorted(lora.pairs.items()):
        if module not in shapes:
            raise LoraError(f"its layer {module} is not a linear layer of FLUX's transformer")
        in_features, out_features = shapes[module]
        if down.shape[1] != in_features or up.shape[0] != out_features:
            raise LoraError(
                f"its layer {module} maps {down.shape[1]}->{up.shape[0]} features, FLUX's "
                f"{in_features}->{out_features}"
            )


def _features(module: nn.Module) -> tuple[int, int]:
    # The ignore below: linear layers' features are ints; torch types module attributes loosely.
    return int(module.in_features), int(module.out_features)  # type: ignore[arg-type]


def adapt_to_model(
    lora: LoraFile,
    modules: Mapping[str, nn.Module],
    *,
    rank: int | None = None,
    weight: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """The LoRA as a peft state dict for this model: q/k/v merged where the model is fused,
    `weight` folded into the up matrices, every module padded to `rank` when given."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    groups: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    for module, pair in lora.pairs.items():
        if module in modules:
            pairs[module] = pair
            continue
        parent, _, leaf = module.rpartition(".")
        fused = _PART_OF.get(leaf)
        if fused is None or f"{parent}.{fused[0]}" not in modules:
            raise LoraError(f"its layer {module} is not in this model")
        groups.setdefault(f"{parent}.{fused[0]}", {})[fused[1]] = pair
    for name, parts in groups.items():
        in_features, out_features = _features(modules[name])
        each = out_features // 3
        downs = [parts[i][0] for i in sorted(parts)]
        total = sum(d.shape[0] for d in downs)
        up = torch.zeros(out_features, total)
        column = 0
        for i in sorted(parts):
            down, part_up = parts[i]
            up[i * each : (i + 1) * each, column : column + down.shape[0]] = part_up
            column += down.shape[0]
        pairs[name] = (torch.cat(downs), up)
    state: dict[str, torch.Tensor] = {}
    for name, (down, up) in pairs.items():
        in_features, out_features = _features(modules[name])
        if down.shape[1] != in_features or up.shape[0] != out_features:
            raise LoraError(
                f"its layer {name} maps {down.shape[1]}->{up.shape[0]} features, the model's "
                f"{in_features}->{out_features}"
            )
        if rank is not None:
            if down.shape[0] > rank:
                raise LoraError(
                    f"its layer {name} needs rank {down.shape[0]}, more than the {rank} this "
                    "replica's LoRA slot was built for (restart to rebuild it)"
                )
            down = torch.cat([down, down.new_zeros(rank - down.shape[0], in_features)])
            up = torch.cat([up, up.new_zeros(out_features, rank - up.shape[1])], dim=1)
        up = up * weight
        state[f"{name}.lora_A.weight"] = down.to(device=device, dtype=dtype)
        state[f"{name}.lora_B.weight"] = up.to(device=device, dtype=dtype)
    return state


def _adapter_params(transformer: nn.Module, name: str) -> list[torch.nn.Parameter]:
    return [
        p
        for n, p in transformer.named_parameters()
        if ".lora_" in n and (f".{name}." in n or n.endswith(f".{name}"))
    ]


def _to_base_dtype(transformer: nn.Module, name: str, dtype: torch.dtype) -> int:
    """Keep an adapter in the model's dtype (peft upcasts bf16 adapters to fp32, which would
    make every LoRA matmul fp32 and cast each activation); returns the adapter's bytes."""
    total = 0
    for param in _adapter_params(transformer, name):
        if param.dtype != dtype and param.dtype.is_floating_point:
            param.data = param.data.to(dtype)
        total += param.numel() * param.element_size()
    return total


def _state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


@dataclass(slots=True)
class AdapterReport:
    """What a replica's LoRAs take: shown by /gpu and the benchmark."""

    mode: str
    capacity: int
    loaded: list[tuple[str, int]] = field(default_factory=list)  # (source, bytes)
    slot_bytes: int = 0
    loads: int = 0
    switches: int = 0
    unloads: int = 0

    @property
    def total_bytes(self) -> int:
        return self.slot_bytes + sum(size for _, size in self.loaded)

    def describe(self) -> str:
        if not self.loaded and not self.slot_bytes:
            return "no LoRA loaded"
        mib = self.total_bytes / 2**20
        return f"{len(self.loaded)}/{self.capacity} LoRA(s), {mib:.1f} MiB ({self.mode})"


class LoraAdapters:
    """The LoRAs one replica holds and which one the next batch uses; called from the replica's
    one device thread only."""

    def __init__(self, pipe: Any, *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.pipe = pipe
        self.capacity = capacity
        self.slot_rank = 0
        self._current: LoraSpec | None = None
        self._names: OrderedDict[str, str] = OrderedDict()  # adapters mode: source -> name
        self._sizes: dict[str, int] = {}
        self._counter = 0
        self._ready: OrderedDict[LoraSpec, dict[str, torch.Tensor]] = OrderedDict()  # slot mode
        self._slot_bytes = 0
        self._slot_ranks: dict[str, int] = {}
        self._slot_metadata: dict[str, Any] = {}
        self.loads = 0
        self.switches = 0
        self.unloads = 0
        # Snapshots for other threads (the scheduler, /gpu): replaced whole, never mutated.
        self.loaded_sources: frozenset[str] = frozenset()
        self.summary = "no LoRA loaded"

    # -- building ---------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "slot" if self.slot_rank else "adapters"

    @property
    def _transformer(self) -> Any:
        # Any: diffusers' LoRA methods (PeftAdapterMixin) are not visible on nn.Module's type.
        return self.pipe.transformer

    def install_slot(self, specs: Iterable[LoraSpec]) -> None:
        """Inject one adapter that fits every LoRA in `specs` (each layer at the largest rank
        any of them has there; all zero until a switch). Call it after q/k/v fusion and before
        fp8 conversion or compilation."""
        from peft.utils.hotswap import prepare_model_for_compiled_hotswap

        transformer = self._transformer
        modules = dict(transformer.named_modules())
        ranks: dict[str, int] = {}
        for source in dict.fromkeys(spec.source for spec in specs):
            state = adapt_to_model(read_lora(source), modules)
            for key, tensor in state.items():
                if key.endswith(".lora_A.weight"):
                    name = key.removesuffix(".lora_A.weight")
                    ranks[name] = max(ranks.get(name, 0), tensor.shape[0])
        if not ranks:
            return
        dtype = next(transformer.parameters()).dtype
        zero: dict[str, torch.Tensor] = {}
        for name, rank in ranks.items():
            in_features, out_features = _features(modules[name])
            zero[f"{name}.lora_A.weight"] = torch.zeros(rank, in_features, dtype=dtype)
            zero[f"{name}.lora_B.weight"] = torch.zeros(out_features, rank, dtype=dtype)
        transformer.load_lora_adapter(zero, prefix=None, adapter_name=SLOT)
        config = transformer.peft_config[SLOT]
        # Scales as tensors, so a swap changes values the compiled graphs read, not constants
        # they were specialised on.
        prepare_model_for_compiled_hotswap(transformer, config=config, check_compiled="ignore")
        # Every swap is described with the slot's own config: each layer's scale stays
        # alpha/rank = 1 (the LoRA's own scale is folded into its matrices), and a LoRA of
        # lower rank than the slot's layer is zero-padded by the swap.
        self._slot_metadata = {
            "r": config.r,
            "lora_alpha": config.lora_alpha,
            "rank_pattern": dict(config.rank_pattern),
            "alpha_pattern": dict(config.alpha_pattern),
            "target_modules": sorted(ranks),
        }
        self._slot_ranks = ranks
        self.slot_rank = max(ranks.values())
        self._slot_bytes = _to_base_dtype(transformer, SLOT, dtype)
        self._zero_slot()
        self._publish()
        log.info(
            "LoRA slot: ranks up to %d over %d layers, %.1f MiB",
            self.slot_rank,
            len(ranks),
            self._slot_bytes / 2**20,
        )

    # -- switching --------------------------------------------------------------------------------

    def activate(self, spec: LoraSpec | None) -> None:
        """Make the next pipeline call use `spec` (None: no LoRA)."""
        if spec == self._current:
            return
        started = time.perf_counter()
        if self.slot_rank:
            self._activate_slot(spec)
        else:
            self._activate_adapter(spec)
        self._current = spec
        self.switches += 1
        self._publish()
        log.debug(
            "LoRA %s active in %.1f ms",
            spec.source if spec else "(none)",
            (time.perf_counter() - started) * 1000,
        )

    def _activate_adapter(self, spec: LoraSpec | None) -> None:
        if spec is None:
            if self._names:
                self.pipe.disable_lora()
            return
        name = self._names.get(spec.source)
        if name is None:
            name = self._load_adapter(spec.source)
        self._names.move_to_end(spec.source)
        self.pipe.enable_lora()
        self.pipe.set_adapters([name], adapter_weights=[float(spec.weight)])

    def _load_adapter(self, source: str) -> str:
        lora = read_lora(source)
        transformer = self._transformer
        dtype = next(transformer.parameters()).dtype
        state = adapt_to_model(lora, dict(transformer.named_modules()), dtype=dtype)
        while len(self._names) >= self.capacity:
            old_source, old_name = self._names.popitem(last=False)
            self.pipe.delete_adapters([old_name])
            self._sizes.pop(old_source, None)
            self.unloads += 1
            log.info("unloaded LoRA %s (least recently used)", old_source)
        self._counter += 1
        name = f"style{self._counter}"
        try:
            self.pipe.load_lora_weights(
                {PREFIX + k: v for k, v in state.items()}, adapter_name=name
            )
        except (ValueError, RuntimeError, TypeError, AttributeError) as exc:
            # e.g. fp8 base layers without a slot: peft cannot wrap them.
            raise LoraError(f"LoRA {source} cannot be loaded on this replica: {exc}") from None
        self._names[source] = name
        self._sizes[source] = _to_base_dtype(transformer, name, dtype)
        self.loads += 1
        log.info(
            "loaded LoRA %s as adapter %s: %.1f MiB",
            source,
            name,
            self._sizes[source] / 2**20,
        )
        return name

    def _activate_slot(self, spec: LoraSpec | None) -> None:
        if spec is None:
            self._zero_slot()
            return
        state = self._ready.get(spec)
        if state is None:
            state = self._prepare(spec)
        self._ready.move_to_end(spec)
        try:
            self._transformer.load_lora_adapter(
                dict(state),
                prefix=None,
                adapter_name=SLOT,
                hotswap=True,
                metadata=dict(self._slot_metadata),
            )
        except (RuntimeError, ValueError) as exc:
            self._zero_slot()
            self._current = None
            raise LoraError(f"LoRA {spec.source} does not fit this replica's slot: {exc}") from None

    def _prepare(self, spec: LoraSpec) -> dict[str, torch.Tensor]:
        transformer = self._transformer
        modules = dict(transformer.named_modules())
        slot_weight = _adapter_params(transformer, SLOT)[0]
        state = adapt_to_model(
            read_lora(spec.source),
            modules,
            weight=float(spec.weight),
            dtype=slot_weight.dtype,
            device=slot_weight.device,
        )
        for key, tensor in state.items():
            if not key.endswith(".lora_A.weight"):
                continue
            name = key.removesuffix(".lora_A.weight")
            room = self._slot_ranks.get(name)
            if room is None or tensor.shape[0] > room:
                needs = f"rank {tensor.shape[0]} at layer {name}"
                has = f"rank {room}" if room else "no LoRA there"
                raise LoraError(
                    f"LoRA {spec.source} needs {needs}; this replica's slot, built at start "
                    f"for the styles file's LoRAs, has {has} (restart to rebuild it)"
                )
        while len(self._ready) >= self.capacity:
            old, _ = self._ready.popitem(last=False)
            self.unloads += 1
            log.info("unloaded LoRA %s (least recently used)", old.source)
        self._ready[spec] = state
        self.loads += 1
        log.info("loaded LoRA %s: %.1f MiB ready", spec.source, _state_bytes(state) / 2**20)
        return state

    def _zero_slot(self) -> None:
        """No LoRA: every slot layer's scale to 0 (in place: compiled graphs read the tensor)."""
        for module in self._transformer.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(scaling, dict) and isinstance(scaling.get(SLOT), torch.Tensor):
                scaling[SLOT].fill_(0.0)

    # -- reporting --------------------------------------------------------------------------------

    def _publish(self) -> None:
        report = self.report()
        self.loaded_sources = frozenset(source for source, _ in report.loaded)
        self.summary = report.describe()

    def report(self) -> AdapterReport:
        if self.slot_rank:
            loaded = [(spec.source, _state_bytes(state)) for spec, state in self._ready.items()]
        else:
            loaded = [(source, self._sizes.get(source, 0)) for source in self._names]
        return AdapterReport(
            mode=self.mode,
            capacity=self.capacity,
            loaded=loaded,
            slot_bytes=self._slot_bytes,
            loads=self.loads,
            switches=self.switches,
            unloads=self.unloads,
        )


def lora_specs(specs: Sequence[LoraSpec | None]) -> list[LoraSpec]:
    """The distinct LoRAs among `specs` (None dropped), in order."""
    return list(dict.fromkeys(spec for spec in specs if spec is not None))
