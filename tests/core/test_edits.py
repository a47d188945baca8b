"""The arithmetic of image operations: strength to steps, canvases, masks, tiles, limits."""

from __future__ import annotations

import pytest

from fluxbot.core.edits import (
    MASK_OVERLAP,
    Box,
    ImageEdit,
    Operation,
    PanDirection,
    Pipeline,
    check_strength,
    denoise_steps,
    edit_sizes,
    fit_size,
    pan_layout,
    tile_grid,
    upscale_size,
    zoom_layout,
)
from fluxbot.core.requests import GenerationRequest, RequestError, SizeLimits

SHA = "ab" * 32


def _multiples_of_16(box: Box) -> bool:
    return all(v % 16 == 0 for v in (box.x, box.y, box.width, box.height))


@pytest.mark.parametrize(
    ("strength", "steps"),
    [(0.05, 1), (0.25, 1), (0.3, 2), (0.35, 2), (0.5, 2), (0.6, 3), (0.7, 3), (0.9, 4), (1.0, 4)],
)
def test_strength_runs_its_share_of_four_steps(strength: float, steps: int) -> None:
    assert denoise_steps(4, strength) == steps


def test_strength_share_of_more_steps() -> None:
    assert denoise_steps(8, 0.35) == 3
    assert denoise_steps(8, 0.5) == 4
    assert denoise_steps(1, 0.05) == 1  # never zero: diffusers would refuse the call


@pytest.mark.parametrize("bad", [0.0, 0.04, 1.01, -1, "strong", None, True, float("nan")])
def test_strength_out_of_range_is_refused_with_the_range(bad: object) -> None:
    with pytest.raises(RequestError, match=r"strength .* a number from 0.05 to 1"):
        check_strength(bad)


def test_request_costs_its_real_steps_and_tiles() -> None:
    vary = ImageEdit(Operation.VARY, source_sha256=SHA, strength=0.35)
    request = GenerationRequest("fox", 1, count=2, edit=vary)
    assert request.denoise_steps == 2
    assert request.transformer_passes == 4
    upscale = ImageEdit(Operation.UPSCALE, source_sha256=SHA, strength=0.3, tile=1152)
    big = GenerationRequest("fox", 1, width=2048, height=2048, edit=upscale)
    assert big.tiles == 4 and big.denoise_steps == 2 and big.transformer_passes == 8
    assert big.pass_megapixels == pytest.approx(1088 * 1088 / 2**20)
    plain = GenerationRequest("fox", 1)
    assert plain.transformer_passes == 4 and plain.tiles == 1


@pytest.mark.parametrize("factor", [1.5, 2.0])
@pytest.mark.parametrize("size", [(1024, 1024), (1344, 768), (768, 1344), (256, 256)])
def test_zoom_keeps_the_canvas_and_centres_the_shrunk_source(
    factor: float, size: tuple[int, int]
) -> None:
    w, h = size
    layout = zoom_layout(w, h, factor)
    source, keep = layout.source, layout.keep
    assert layout.canvas == (w, h)
    assert _multiples_of_16(source) and _multiples_of_16(keep)
    assert abs(source.width - w / factor) <= 16 and abs(source.height - h / factor) <= 16
    # Centred to within one 16-pixel cell, with new canvas on every side.
    assert abs(source.x - (w - source.right)) <= 16 and abs(source.y - (h - source.bottom)) <= 16
    assert source.x > 0 and source.y > 0
    # The mask reaches MASK_OVERLAP into the source on every side.
    assert keep == Box(
        source.x + MASK_OVERLAP,
        source.y + MASK_OVERLAP,
        source.width - 2 * MASK_OVERLAP,
        source.height - 2 * MASK_OVERLAP,
    )


def test_zoom_factor_is_checked() -> None:
    with pytest.raises(RequestError, match="zoom 3"):
        zoom_layout(1024, 1024, 3)


@pytest.mark.parametrize(
    ("direction", "canvas", "source", "keep"),
    [
        ("left", (1536, 1024), Box(512, 0, 1024, 1024), Box(544, 0, 992, 1024)),
        ("right", (1536, 1024), Box(0, 0, 1024, 1024), Box(0, 0, 992, 1024)),
        ("up", (1024, 1536), Box(0, 512, 1024, 1024), Box(0, 544, 1024, 992)),
        ("down", (1024, 1536), Box(0, 0, 1024, 1024), Box(0, 0, 1024, 992)),
    ],
)
def test_pan_grows_the_canvas_towards_the_direction(
    direction: str, canvas: tuple[int, int], source: Box, keep: Box
) -> None:
    layout = pan_layout(1024, 1024, PanDirection(direction), 2048, 2048, 2.0)
    assert layout.canvas == canvas
    assert layout.source == source
    assert layout.keep == keep


def test_pan_beyond_the_limits_scales_the_canvas_down_to_fit() -> None:
    layout = pan_layout(2048, 1024, PanDirection.RIGHT, 2048, 2048, 2.0)
    w, h = layout.canvas
    assert w <= 2048 and h <= 2048 and w * h <= 2.0 * 2**20
    assert w % 16 == 0 and h % 16 == 0 and _multiples_of_16(layout.source)
    assert layout.source.x == 0 and layout.source.right < w  # the new part is on the right
    assert abs(layout.source.width / layout.source.height - 2.0) < 0.05  # aspect kept


@pytest.mark.parametrize(
    ("w", "h", "tile"), [(2048, 2048, 1152), (4096, 4096, 1024), (1200, 800, 512), (512, 512, 1024)]
)
def test_tiles_cover_the_image_with_overlap(w: int, h: int, tile: int) -> None:
    tiles = tile_grid(w, h, tile)
    covered = [[0] * (w // 16) for _ in range(h // 16)]
    for box in tiles:
        assert _multiples_of_16(box) and box.width <= tile and box.height <= tile
        assert box.right <= w and box.bottom <= h
        for y in range(box.y // 16, box.bottom // 16):
            for x in range(box.x // 16, box.right // 16):
                covered[y][x] += 1
    assert all(all(row) for row in covered)
    for a in tiles:  # neighbours overlap by at least 128 px
        for b in tiles:
            if a.y == b.y and a.x < b.x < a.right:
                assert a.right - b.x >= 128
    assert len({(b.width, b.height) for b in tiles}) == 1  # one shape: one compiled graph


def test_2048_upscale_is_four_tiles() -> None:
    assert len(tile_grid(2048, 2048, 1152)) == 4


def test_upscale_doubles_up_to_the_configured_side() -> None:
    assert upscale_size(1024, 1024, 4096) == (2048, 2048)
    assert upscale_size(2048, 2048, 4096) == (4096, 4096)
    with pytest.raises(RequestError, match="within 4096 px"):
        upscale_size(4096, 4096, 4096)
    with pytest.raises(RequestError, match="within 2048 px"):
        upscale_size(1344, 768, 2048)


def test_upscales_answer_to_their_own_size_limit() -> None:
    upscale = ImageEdit(Operation.UPSCALE, source_sha256=SHA, strength=0.3, tile=1152)
    limits = SizeLimits(upscale_max_side=4096)
    GenerationRequest("fox", 1, width=4096, height=4096, edit=upscale).check_limits(limits)
    with pytest.raises(RequestError, match="upscale of at most 2048"):
        GenerationRequest("fox", 1, width=4096, height=4096, edit=upscale).check_limits(
            SizeLimits(upscale_max_side=2048)
        )
    with pytest.raises(RequestError, match="megapixels"):  # other jobs keep the megapixel cap
        GenerationRequest("fox", 1, width=2048, height=2048).check_limits(limits)


def test_fit_size_keeps_the_aspect_near_a_megapixel() -> None:
    w, h = fit_size(4000, 3000, 2048, 2.0)
    assert w % 16 == 0 and h % 16 == 0
    assert abs(w / h - 4 / 3) < 0.02 and 0.9 < w * h / 2**20 <= 1.0


def test_edit_parameters_round_trip_and_keep_the_bytes_out() -> None:
    edit = ImageEdit(
        Operation.PAN,
        source_sha256=SHA,
        parent="abc123",
        parent_index=2,
        pan=PanDirection.LEFT,
        box=(512, 0, 1024, 1024),
        source=b"png bytes",
    )
    request = GenerationRequest("fox", 7, width=1536, height=1024, edit=edit)
    params = request.to_params()
    assert params["edit"] == {
        "operation": "pan",
        "source_sha256": SHA,
        "parent": "abc123",
        "parent_index": 2,
        "pan": "left",
        "box": [512, 0, 1024, 1024],
    }
    again = GenerationRequest.from_params(params)
    assert again == request and again.edit is not None and again.edit.source is None
    assert again.edit.pipeline is Pipeline.INPAINT and again.edit.effective_strength == 1.0


def test_batch_keys_separate_pipelines_and_strengths() -> None:
    def key(edit: ImageEdit | None) -> tuple[object, ...]:
        return GenerationRequest("fox", 1, edit=edit).batch_key()

    subtle = ImageEdit(Operation.VARY, source_sha256=SHA, strength=0.35)
    strong = ImageEdit(Operation.VARY, source_sha256=SHA, strength=0.7)
    other_source = ImageEdit(Operation.VARY, source_sha256="cd" * 32, strength=0.35)
    zoom = ImageEdit(Operation.ZOOM, source_sha256=SHA, zoom=2.0, box=(256, 256, 512, 512))
    assert key(subtle) == key(other_source)  # like jobs batch together
    assert len({key(None), key(subtle), key(strong), key(zoom)}) == 4


def test_edits_refuse_what_they_cannot_run() -> None:
    with pytest.raises(RequestError, match="source image"):
        ImageEdit(Operation.VARY, strength=0.35)
    with pytest.raises(RequestError, match="box"):
        ImageEdit(Operation.ZOOM, source_sha256=SHA, zoom=2.0, box=(1, 2, 3, 4))
    with pytest.raises(RequestError, match="strength"):
        ImageEdit(Operation.VARY, source_sha256=SHA)
    with pytest.raises(ValueError):
        ImageEdit(Operation.PAN, source_sha256=SHA, pan="sideways", box=(0, 0, 16, 16))


def test_edit_sizes_are_the_upscale_tiles_and_the_pan_canvases() -> None:
    limits = {"max_width": 2048, "max_height": 2048, "max_megapixels": 2.0}
    sizes = edit_sizes(1024, 1024, tile=1152, upscale_max_side=4096, **limits)
    tiles = {(b.width, b.height) for b in tile_grid(2048, 2048, 1152)}
    pans = {pan_layout(1024, 1024, d, **limits).canvas for d in PanDirection}
    assert set(sizes) == tiles | pans and len(sizes) == len(set(sizes))
    assert pans == {(1536, 1024), (1024, 1536)}
    # An image that may not be upscaled again has no tiles to warm.
    assert set(edit_sizes(1024, 1024, tile=1152, upscale_max_side=1024, **limits)) == pans
