"""Jobs that start from an image, on the real tiny-random img2img and inpaint pipelines."""

from __future__ import annotations

import hashlib
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from fluxbot.core.edits import ImageEdit, Operation, PanDirection, pan_layout, zoom_layout
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine.encoding import encode_png
from fluxbot.engine.pipeline import FluxRunner, GenerationCancelled, StepProgress


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.fixture(scope="module")
def source(tiny_runner: FluxRunner) -> bytes:
    image = tiny_runner.generate([GenerationRequest("a red fox", 11, width=256, height=256)])[0]
    return encode_png(image.images[0], {"prompt": "a red fox"}, 11).data


def _edit(source: bytes, operation: Operation, **fields: object) -> ImageEdit:
    sha = hashlib.sha256(source).hexdigest()
    return ImageEdit(operation, source_sha256=sha, source=source, **fields)  # type: ignore[arg-type]


def _vary(
    source: bytes, seed: int = 5, strength: float = 0.35, **fields: object
) -> GenerationRequest:
    edit = _edit(source, Operation.VARY, strength=strength, parent="abc123", parent_index=0)
    values: dict[str, object] = {"width": 128, "height": 128}
    values.update(fields)
    return GenerationRequest("a red fox", seed, edit=edit, **values)  # type: ignore[arg-type]


def _zoom(source: bytes, seed: int = 5) -> GenerationRequest:
    box = zoom_layout(256, 256, 2.0).source
    edit = _edit(source, Operation.ZOOM, zoom=2.0, box=(box.x, box.y, box.width, box.height))
    return GenerationRequest("a red fox", seed, width=256, height=256, edit=edit)


def test_image_pipelines_share_the_loaded_weights(tiny_runner: FluxRunner, source: bytes) -> None:
    before = {id(p) for p in tiny_runner.pipe.transformer.parameters()}
    tiny_runner.generate([_vary(source)])
    tiny_runner.generate([_zoom(source)])
    assert tiny_runner.image_ops.shares_weights()
    assert {id(p) for p in tiny_runner.pipe.transformer.parameters()} == before
    img2img = tiny_runner.image_ops.pipeline(_vary(source).edit.pipeline)  # type: ignore[union-attr]
    assert type(img2img).__name__ == "FluxImg2ImgPipeline"
    assert img2img.transformer is tiny_runner.pipe.transformer
    assert img2img.scheduler is not tiny_runner.pipe.scheduler  # img2img moves its start


@pytest.mark.parametrize(("strength", "steps"), [(0.35, 2), (0.7, 3), (1.0, 4)])
def test_img2img_runs_only_its_share_of_the_steps(
    tiny_runner: FluxRunner, source: bytes, strength: float, steps: int
) -> None:
    seen: list[StepProgress] = []
    request = _vary(source, strength=strength)
    assert request.denoise_steps == steps
    tiny_runner.generate([request], on_step=seen.append)
    assert [(p.step, p.total) for p in seen] == [(i + 1, steps) for i in range(steps)]


def test_same_source_operation_and_seed_give_identical_pixels(
    tiny_runner: FluxRunner, source: bytes
) -> None:
    first = tiny_runner.generate([_vary(source, seed=5)])[0].images[0]
    again = tiny_runner.generate([_vary(source, seed=5)])[0].images[0]
    other = tiny_runner.generate([_vary(source, seed=6)])[0].images[0]
    stronger = tiny_runner.generate([_vary(source, seed=5, strength=0.7)])[0].images[0]
    assert np.array_equal(_pixels(first), _pixels(again))
    assert not np.array_equal(_pixels(first), _pixels(other))
    assert not np.array_equal(_pixels(first), _pixels(stronger))
    zoomed = tiny_runner.generate([_zoom(source, seed=5)])[0].images[0]
    assert np.array_equal(
        _pixels(zoomed), _pixels(tiny_runner.generate([_zoom(source, seed=5)])[0].images[0])
    )


def test_a_fresh_runner_makes_the_same_pixels(tiny_runner: FluxRunner, source: bytes) -> None:
    """What a restart does: a newly loaded replica, the source read back from its bytes."""
    fresh = FluxRunner.tiny()
    for request in (_vary(source, seed=9), _zoom(source, seed=9)):
        a = tiny_runner.generate([request])[0].images[0]
        b = fresh.generate([request])[0].images[0]
        assert np.array_equal(_pixels(a), _pixels(b))


def test_zoom_keeps_the_source_and_draws_a_border(tiny_runner: FluxRunner, source: bytes) -> None:
    request = _zoom(source)
    image = tiny_runner.generate([request])[0].images[0]
    assert image.size == (256, 256)
    layout = request.edit.layout(256, 256)  # type: ignore[union-attr]
    keep, box = layout.keep, layout.source
    with Image.open(io.BytesIO(source)) as opened:
        placed = opened.convert("RGB").resize((box.width, box.height), Image.Resampling.LANCZOS)
    expected = np.asarray(placed)[
        keep.y - box.y + 32 : keep.bottom - box.y - 32,
        keep.x - box.x + 32 : keep.right - box.x - 32,
    ]
    inner = np.asarray(image)[keep.y + 32 : keep.bottom - 32, keep.x + 32 : keep.right - 32]
    assert np.array_equal(inner, expected)  # past the feather, exactly the user's pixels
    border = np.asarray(image)[: box.y, :]
    assert border.std() > 0 and not (border == 127).all()  # generated, not the fill colour


def test_pan_extends_the_canvas(tiny_runner: FluxRunner, source: bytes) -> None:
    layout = pan_layout(256, 256, PanDirection.LEFT, 2048, 2048, 2.0)
    s = layout.source
    edit = _edit(source, Operation.PAN, pan="left", box=(s.x, s.y, s.width, s.height))
    request = GenerationRequest("a red fox", 3, width=384, height=256, edit=edit)
    image = tiny_runner.generate([request])[0].images[0]
    assert image.size == (384, 256)
    original = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    # The right part is the original image (beyond the feather band), the left is new.
    assert np.array_equal(np.asarray(image)[:, 128 + 64 :], original[:, 64:])


def test_upscale_doubles_in_tiles_with_progress_over_all_tiles(
    tiny_runner: FluxRunner, source: bytes
) -> None:
    edit = _edit(source, Operation.UPSCALE, strength=0.3, tile=320)
    request = GenerationRequest("a red fox", 4, width=512, height=512, edit=edit)
    seen: list[StepProgress] = []
    result = tiny_runner.generate([request], on_step=seen.append)[0]
    assert result.images[0].size == (512, 512)
    assert request.tiles == 4 and request.denoise_steps == 2
    assert [(p.step, p.total) for p in seen] == [(i + 1, 8) for i in range(8)]
    assert result.notes == ["refined in 4 tiles"]
    again = tiny_runner.generate([request])[0].images[0]
    assert np.array_equal(_pixels(result.images[0]), _pixels(again))


def test_a_batch_of_varies_matches_each_alone(tiny_runner: FluxRunner, source: bytes) -> None:
    other = encode_png(Image.new("RGB", (96, 96), (30, 90, 200)), {}, 0).data
    a, b = _vary(source, seed=1), _vary(other, seed=2)
    assert a.batch_key() == b.batch_key()
    together = tiny_runner.generate([a, b])
    alone = tiny_runner.generate([b])[0].images[0]
    assert np.abs(_pixels(together[1].images[0]) - _pixels(alone)).max() <= 1
    assert together[0].seeds == [1] and together[1].seeds == [2]


def test_cancel_stops_an_image_job(tiny_runner: FluxRunner, source: bytes) -> None:
    cancel = threading.Event()

    def on_step(progress: StepProgress) -> None:
        cancel.set()

    with pytest.raises(GenerationCancelled):
        tiny_runner.generate([_zoom(source)], on_step=on_step, cancel=cancel)


def test_pixels_are_diffusers_own_conversion_made_from_uint8() -> None:
    from diffusers.image_processor import VaeImageProcessor

    from fluxbot.engine.image_ops import pixels

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8))
    processor = VaeImageProcessor(vae_scale_factor=16)
    theirs = processor.preprocess([image, image], height=96, width=64)
    ours = processor.preprocess(pixels([image, image], "cpu"), height=96, width=64)
    assert torch.equal(ours, theirs) and ours.stride() == theirs.stride()


def test_a_source_is_decoded_once_for_the_jobs_that_start_from_it() -> None:
    from fluxbot.engine import image_ops

    def edit(colour: tuple[int, int, int]) -> ImageEdit:
        data = encode_png(Image.new("RGB", (32, 32), colour), {}, seed=1).data
        return ImageEdit(Operation.VARY, source_sha256="same name", source=data, strength=0.5)

    red, blue = edit((255, 0, 0)), edit((0, 0, 255))
    first = image_ops.load_source(red)
    assert image_ops.load_source(red) is first  # the second job does not decode again
    # Keyed by the bytes, not the name they came with.
    assert image_ops.load_source(blue).getpixel((0, 0)) == (0, 0, 255)
    for i in range(image_ops.SOURCE_CACHE):
        image_ops.load_source(edit((i, i, i)))
    assert image_ops.load_source(red) is not first  # evicted, decoded again
