"""FluxRunner on the real tiny-random diffusers pipeline."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from fluxbot.core.requests import AnimationSpec, GenerationRequest
from fluxbot.devices.memory import LighterSettings
from fluxbot.engine.model_builder import build_tiny_pipeline
from fluxbot.engine.pipeline import (
    FluxRunner,
    GenerationCancelled,
    ModelLoadError,
    StepProgress,
    load_flux_pipeline,
)


def _pixels(image) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(image).astype(np.int16)


def fox(**kwargs) -> GenerationRequest:  # type: ignore[no-untyped-def]
    fields = {"prompt": "a red fox", "seed": 42, "width": 256, "height": 256}
    fields.update(kwargs)
    return GenerationRequest(**fields)


def test_generates_the_requested_size_and_seeds(tiny_runner: FluxRunner) -> None:
    result = tiny_runner.generate([fox(width=320, height=256, count=2)])[0]
    assert [im.size for im in result.images] == [(320, 256), (320, 256)]
    assert result.seeds == [42, 43]
    assert result.timings.denoise > 0 and result.timings.decode > 0


def test_same_request_same_pixels(tiny_runner: FluxRunner) -> None:
    first = tiny_runner.generate([fox()])[0].images[0]
    again = tiny_runner.generate([fox()])[0].images[0]
    other = tiny_runner.generate([fox(seed=43)])[0].images[0]
    assert np.array_equal(_pixels(first), _pixels(again))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_batch_image_can_be_made_again_alone(tiny_runner: FluxRunner) -> None:
    batch = tiny_runner.generate([fox(count=4)])[0]
    alone = tiny_runner.generate([fox(seed=44)])[0]
    # The starting noise is bit-identical: it comes from seed 44's own CPU generator.
    assert torch.equal(
        tiny_runner.initial_noise([42, 43, 44, 45], 256, 256)[2],
        tiny_runner.initial_noise([44], 256, 256)[0],
    )
    # Pixels agree up to one level of rounding from batched arithmetic.
    assert np.abs(_pixels(batch.images[2]) - _pixels(alone.images[0])).max() <= 1
    assert not np.array_equal(_pixels(batch.images[0]), _pixels(batch.images[1]))


def test_seed_wraps_at_the_top_of_the_range(tiny_runner: FluxRunner) -> None:
    result = tiny_runner.generate([fox(seed=2**32 - 1, count=2)])[0]
    assert result.seeds == [2**32 - 1, 0]


def test_progress_reports_every_step_in_order(tiny_runner: FluxRunner) -> None:
    seen: list[StepProgress] = []
    tiny_runner.generate([fox(steps=4)], on_step=seen.append, want_preview=True)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert all(p.total == 4 for p in seen)
    assert seen[0].preview is not None and max(seen[0].preview.size) <= 128


def test_cancel_stops_at_the_next_step(tiny_runner: FluxRunner) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(progress: StepProgress) -> None:
        seen.append(progress.step)
        if progress.step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        tiny_runner.generate([fox(steps=6)], on_step=on_step, cancel=cancel)
    assert seen == [1, 2]
    # The runner is fine afterwards.
    assert len(tiny_runner.generate([fox()])[0].images) == 1


def test_rerolls_reuse_cached_text_embeddings() -> None:
    runner = FluxRunner.tiny()
    runner.generate([fox()])
    hits = runner.embed_cache_hits
    runner.generate([fox(seed=7)])
    assert runner.embed_cache_hits == hits + 1


def test_negative_prompt_runs_true_cfg(tiny_runner: FluxRunner) -> None:
    plain = tiny_runner.generate([fox()])[0].images[0]
    negative = tiny_runner.generate([fox(negative="blurry, dark")])[0].images[0]
    assert not np.array_equal(_pixels(plain), _pixels(negative))


def test_batched_requests_get_their_own_results(tiny_runner: FluxRunner) -> None:
    a, b = tiny_runner.generate([fox(seed=1), fox(prompt="a blue bird", seed=2, count=2)])
    assert (a.seeds, b.seeds) == ([1], [2, 3])
    assert b.request.prompt == "a blue bird" and len(b.images) == 2
    with pytest.raises(ValueError, match="batch_key"):
        tiny_runner.generate([fox(), fox(width=512)])


def test_out_of_memory_retry_splits_the_batch(tiny_runner: FluxRunner) -> None:
    batch = tiny_runner.generate([fox(count=3)])[0]
    light = LighterSettings(vae_tiling=False, vae_slicing=True, split_batch=True)
    split = tiny_runner.generate([fox(count=3)], lighter=light)[0]
    assert split.seeds == [42, 43, 44]
    assert split.notes and "one image at a time" in split.notes[0]
    for one, other in zip(batch.images, split.images, strict=True):
        assert np.abs(_pixels(one) - _pixels(other)).max() <= 1


def test_animation_frames_morph_between_two_seeds(tiny_runner: FluxRunner) -> None:
    spec = AnimationSpec(frames=5, seed_to=7)
    frames = tiny_runner.generate([fox(animation=spec)])[0].images
    start = tiny_runner.generate([fox()])[0].images[0]
    end = tiny_runner.generate([fox(seed=7)])[0].images[0]
    assert len(frames) == 5
    assert np.abs(_pixels(frames[0]) - _pixels(start)).max() <= 1
    assert np.abs(_pixels(frames[-1]) - _pixels(end)).max() <= 1
    middle = _pixels(frames[2])
    assert not np.array_equal(middle, _pixels(start)) and not np.array_equal(middle, _pixels(end))


def test_loads_a_local_diffusers_directory(tmp_path: Path, tiny_runner: FluxRunner) -> None:
    build_tiny_pipeline().save_pretrained(tmp_path / "model")
    loaded = FluxRunner.load(str(tmp_path / "model"), "cpu")
    ours = tiny_runner.generate([fox()])[0].images[0]
    theirs = loaded.generate([fox()])[0].images[0]
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        mine, read = getattr(tiny_runner.pipe, name), getattr(loaded.pipe, name)
        for key, tensor in mine.state_dict().items():
            assert torch.equal(tensor, read.state_dict()[key]), f"{name}.{key}"
    # Same weights; the loaded tensors' memory layout can change CPU kernels' rounding.
    assert np.abs(_pixels(ours) - _pixels(theirs)).max() <= 1


def test_missing_weights_say_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="hf download"):
        load_flux_pipeline("black-forest-labs/FLUX.1-schnell", torch.float32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_flux_pipeline(str(tmp_path / "empty"), torch.float32)


def test_components_can_be_placed_one_by_one(tiny_runner: FluxRunner) -> None:
    devices = {"transformer": "cpu", "vae": "cpu", "text_encoder": "cpu", "text_encoder_2": "cpu"}
    split = FluxRunner.load("tiny-random", "cpu", component_devices=devices)
    assert split.text_device == torch.device("cpu")
    ours = tiny_runner.generate([fox()])[0].images[0]
    theirs = split.generate([fox()])[0].images[0]
    assert np.array_equal(_pixels(ours), _pixels(theirs))
    with pytest.raises(ValueError, match="VAE"):
        FluxRunner.load("tiny-random", "cpu", component_devices={**devices, "vae": "meta"})


def test_the_execution_device_is_pinned_to_the_runners_device(tiny_runner: FluxRunner) -> None:
    # diffusers would walk every module of every component at each access.
    assert tiny_runner.pipe._execution_device == torch.device("cpu")
    assert type(tiny_runner.pipe)._pinned_device == torch.device("cpu")


def test_no_cuda_graph_capture_overlaps_a_job(tiny_runner: FluxRunner) -> None:
    # Seen on an H200: the compile thread captured a denoising step while an upscale job
    # synchronised the card, and both failed. A job now holds its device's capture gate.
    from fluxbot.devices.capture_gate import gate_for

    gate = gate_for(tiny_runner.device)
    mid_job, release = threading.Event(), threading.Event()

    def hold(progress: StepProgress) -> None:
        if progress.step == 1:
            mid_job.set()
            release.wait(10)

    job = threading.Thread(target=lambda: tiny_runner.generate([fox(steps=2)], on_step=hold))
    job.start()
    try:
        assert mid_job.wait(30)
        with gate.try_capturing() as free:
            assert not free
    finally:
        release.set()
        job.join(30)
    with gate.try_capturing() as free:
        assert free
