"""Step graphs: what a graph is keyed on, and a capture that waits for a busy card in vain."""

from __future__ import annotations

import threading

import pytest
import torch

from fluxbot.devices.capture_gate import gate_for
from fluxbot.engine import step_graphs
from fluxbot.engine.step_graphs import StepGraphs, call_key


def test_calls_a_graph_cannot_serve_have_no_key() -> None:
    assert call_key({"hidden_states": torch.zeros(1)}) is None  # not on a CUDA device
    assert call_key({"joint_attention_kwargs": {"scale": 1.0}}) is None
    assert call_key({"return_dict": False, "joint_attention_kwargs": {}}) == (
        ("joint_attention_kwargs", "{}"),
        ("return_dict", False),
    )


def test_a_capture_that_waits_too_long_for_the_card_stops_capturing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A device thread abandoned in a hung call keeps working for ever: the fresh replica's
    # compile thread must give up capturing, not hold every later job back behind it.
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    monkeypatch.setattr(step_graphs, "CAPTURE_WAIT_S", 0.2)
    model, local = torch.nn.Linear(2, 2), threading.local()
    graphs = StepGraphs(model, local)
    hung, release = threading.Event(), threading.Event()

    def abandoned() -> None:
        with gate_for("cpu").working():
            hung.set()
            release.wait(30)

    thread = threading.Thread(target=abandoned, daemon=True)
    thread.start()
    try:
        assert hung.wait(10)
        graphs._capture(("key",), {"input": torch.ones(1, 2)})
        assert graphs.capture_off is not None and "kept working" in graphs.capture_off
        assert graphs.captured() == 0 and graphs.failed is None
        local.compiled, local.capture = True, True
        out = graphs(input=torch.ones(1, 2))  # served eagerly, no second wait
        assert torch.equal(out, model(torch.ones(1, 2)))
    finally:
        release.set()
        thread.join(10)
