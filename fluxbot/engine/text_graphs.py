"""CUDA graphs for the text encoders: captured once per input shape, then replayed.

FluxRunner encodes one prompt at a time at fixed lengths (CLIP: 77 tokens, T5: the request's
max_sequence_length), so each encoder sees one or two shapes for the life of the process. Eager,
T5-XXL took ~33 ms and CLIP-L ~8 ms per prompt on an H200, mostly Python launching a thousand
small kernels; one replay of captured graphs of both took ~12 ms (bench probe). torch.compile
of the encoders gained nothing there and cost warm-up time at every start.

`graph_encoder_` swaps an encoder's `forward` on the instance: a call the graph can serve (token
ids on a CUDA device, no gradients, no options beyond `output_hidden_states=False`) copies the
ids into the graph's input buffer and replays; any other call runs the original forward, as
does every call after a capture that failed (logged once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fluxbot.devices.capture_gate import gate_for

log = logging.getLogger(__name__)

# The only option FluxPipeline passes; anything else changes what the encoder returns.
_SERVED_OPTIONS = {"output_hidden_states": (False, None)}
_WARM_RUNS = 2  # eager runs on a side stream before capture (cuBLAS workspaces, lazy init)
_CAPTURE_LOCK = threading.Lock()  # one capture at a time in the process


@dataclass
class _Capture:
    graph: torch.cuda.CUDAGraph
    input_ids: torch.Tensor
    output: Any  # the ModelOutput the captured forward returned (its tensors are overwritten)


def _servable(input_ids: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if args or not isinstance(input_ids, torch.Tensor) or input_ids.device.type != "cuda":
        return False
    if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        return False
    return all(
        key in _SERVED_OPTIONS and value in _SERVED_OPTIONS[key] for key, value in kwargs.items()
    )


def _fresh_copy(output: Any) -> Any:
    """A copy of a captured output whose tensors the next replay will not overwrite."""
    return type(output)(
        **{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()}
    )


def _capture(
    forward: Callable[..., Any], input_ids: torch.Tensor, kwargs: dict[str, Any]
) -> _Capture:
    device = input_ids.device
    static_ids = input_ids.clone()
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(_WARM_RUNS):
                forward(static_ids, **kwargs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another replica's device thread may allocate or synchronise on its own
        # card meanwhile (several GPUs load and warm up at once); this card's other threads
        # are kept out by the caller's capture gate.
        with _CAPTURE_LOCK, torch.cuda.graph(graph, capture_error_mode="thread_local"):
            output = forward(static_ids, **kwargs)
    return _Capture(graph, static_ids, output)


def graph_encoder_(encoder: torch.nn.Module, name: str) -> None:
    """Serve `encoder`'s plain calls from CUDA graphs, one per input shape and device."""
    original = encoder.forward
    captures: dict[tuple[Any, ...], _Capture | None] = {}

    def forward(input_ids: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not _servable(input_ids, args, kwargs):
            return original(input_ids, *args, **kwargs)
        key = (tuple(input_ids.shape), input_ids.dtype, input_ids.device, tuple(kwargs.items()))
        if key not in captures:
            # Not while another thread works on the card (a compile, a job): this call runs
            # eagerly then, and a later one captures (fluxbot.devices.capture_gate).
            with gate_for(input_ids.device).try_capturing() as free:
                if not free:
                    return original(input_ids, *args, **kwargs)
                try:
                    captures[key] = _capture(original, input_ids, kwargs)
                    log.info("speed: %s captured as a CUDA graph for input %s", name, key[0])
                except RuntimeError as exc:
                    captures[key] = None
                    log.warning("speed: %s runs eager: CUDA graph capture failed (%s)", name, exc)
        capture = captures[key]
        if capture is None:
            return original(input_ids, *args, **kwargs)
        with torch.cuda.device(input_ids.device):
            capture.input_ids.copy_(input_ids)
            capture.graph.replay()
            return _fresh_copy(capture.output)

    # Patching the instance keeps diffusers' calls unchanged; torch types a module's attributes
    # as Tensor | Module, hence the ignores. A capture of None means that shape failed.
    encoder.forward = forward
    encoder._fluxbot_graphed = True  # type: ignore[assignment]
    encoder._fluxbot_captures = captures  # type: ignore[assignment]


def captured_shapes(encoder: torch.nn.Module) -> list[tuple[int, ...]]:
    """Input shapes `encoder` replays from a CUDA graph (failed captures left out)."""
    captures = getattr(encoder, "_fluxbot_captures", {})
    return [key[0] for key, capture in captures.items() if capture is not None]


def graph_text_encoders_(pipe: Any) -> list[str]:
    """Graph each text encoder of a FluxPipeline that sits on a CUDA device; returns their
    names. Idempotent."""
    graphed = []
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        if not isinstance(encoder, torch.nn.Module):
            continue
        try:
            device = next(encoder.parameters()).device
        except StopIteration:
            continue
        if device.type != "cuda":
            continue
        if not getattr(encoder, "_fluxbot_graphed", False):
            graph_encoder_(encoder, name)
        graphed.append(name)
    return graphed
