from __future__ import annotations

from typing import Any

import pytest
import torch

from fluxbot.engine.pipeline import FluxRunner, load_flux_pipeline
from fluxbot.engine.text_graphs import captured_shapes, graph_encoder_, graph_text_encoders_


def test_encoders_on_the_cpu_are_left_alone() -> None:
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    assert graph_text_encoders_(pipe) == []
    assert not getattr(pipe.text_encoder_2, "_fluxbot_graphed", False)


def test_a_graphed_encoder_answers_calls_it_cannot_serve_with_its_own_forward() -> None:
    # Here no call can be served (CPU ids): every call must give exactly what the encoder
    # gives, whatever options it carries.
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    ids = pipe.tokenizer_2("a red fox", padding="max_length", max_length=16, return_tensors="pt")
    clip_ids = pipe.tokenizer("a red fox", padding="max_length", max_length=77, return_tensors="pt")
    with torch.inference_mode():
        before_t5 = pipe.text_encoder_2(ids.input_ids, output_hidden_states=False)[0]
        before_clip = pipe.text_encoder(clip_ids.input_ids, output_hidden_states=False)
        graph_encoder_(pipe.text_encoder_2, "text_encoder_2")
        graph_encoder_(pipe.text_encoder, "text_encoder")
        after_t5 = pipe.text_encoder_2(ids.input_ids, output_hidden_states=False)[0]
        after_clip = pipe.text_encoder(clip_ids.input_ids, output_hidden_states=False)
        hidden = pipe.text_encoder(clip_ids.input_ids, output_hidden_states=True)
    assert torch.equal(before_t5, after_t5)
    assert torch.equal(before_clip.pooler_output, after_clip.pooler_output)
    assert hidden.hidden_states is not None  # an option the graph does not serve still works
    assert captured_shapes(pipe.text_encoder_2) == []  # nothing was captured on the CPU


def test_a_runner_with_graphed_encoders_makes_the_same_image() -> None:
    plain = FluxRunner.tiny()
    graphed = FluxRunner.tiny()
    graph_encoder_(graphed.pipe.text_encoder, "text_encoder")
    graph_encoder_(graphed.pipe.text_encoder_2, "text_encoder_2")
    from fluxbot.core.requests import GenerationRequest

    request = GenerationRequest(prompt="a red fox", seed=3, width=64, height=64)
    a = plain.generate([request])[0].images[0]
    b = graphed.generate([request])[0].images[0]
    assert a.tobytes() == b.tobytes()


def _tiny_on_cuda() -> tuple[Any, torch.Tensor]:
    """The tiny pipeline on the GPU, and T5 token ids for one prompt."""
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    pipe.to("cuda")
    ids = pipe.tokenizer_2("a red fox", padding="max_length", max_length=16, return_tensors="pt")
    return pipe, ids.input_ids.cuda()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_a_replayed_graph_matches_eager_on_cuda() -> None:
    pipe, ids = _tiny_on_cuda()
    with torch.inference_mode():
        eager = pipe.text_encoder_2(ids, output_hidden_states=False)[0].clone()
        assert graph_text_encoders_(pipe) == ["text_encoder", "text_encoder_2"]
        first = pipe.text_encoder_2(ids, output_hidden_states=False)[0]
        second = pipe.text_encoder_2(ids, output_hidden_states=False)[0]
    assert torch.equal(eager, first) and torch.equal(first, second)
    assert captured_shapes(pipe.text_encoder_2) == [(1, 16)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_capture_succeeds_while_another_thread_works_on_the_device() -> None:
    # Several replicas warm up at once: another device thread allocates and synchronises
    # while this one captures.
    import threading

    pipe, ids = _tiny_on_cuda()
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            a = torch.randn(512, 512, device="cuda")
            (a @ a).sum().item()

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        with torch.inference_mode():
            eager = pipe.text_encoder_2(ids, output_hidden_states=False)[0].clone()
            graph_text_encoders_(pipe)
            graphed = pipe.text_encoder_2(ids, output_hidden_states=False)[0]
    finally:
        stop.set()
        worker.join()
    assert torch.equal(eager, graphed)
    assert captured_shapes(pipe.text_encoder_2) == [(1, 16)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_no_capture_while_another_thread_works_on_the_card_eager_meanwhile() -> None:
    import threading

    from fluxbot.devices.capture_gate import gate_for

    pipe, ids = _tiny_on_cuda()
    working, release = threading.Event(), threading.Event()

    def job() -> None:
        with gate_for(ids.device).working():
            working.set()
            release.wait(30)

    worker = threading.Thread(target=job)
    worker.start()
    try:
        assert working.wait(30)
        with torch.inference_mode():
            graph_text_encoders_(pipe)
            pipe.text_encoder_2(ids, output_hidden_states=False)
        assert captured_shapes(pipe.text_encoder_2) == []  # deferred, not failed
    finally:
        release.set()
        worker.join()
    with torch.inference_mode():
        pipe.text_encoder_2(ids, output_hidden_states=False)
    assert captured_shapes(pipe.text_encoder_2) == [(1, 16)]
