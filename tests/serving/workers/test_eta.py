"""The ETA model: size classes, the default seed, learning from measured batches."""

from __future__ import annotations

import pytest

from fluxbot.serving.workers.eta import SpeedModel, size_class
from tests.fakes_runner import request


def test_speed_model_seeds_by_size_then_learns() -> None:
    speed = SpeedModel(default_s_per_megapixel_step=1.0)
    small, large = request(width=512, height=512), request(width=1024, height=1024)
    assert size_class(small) == 0.25 and size_class(large) == 1.0
    assert size_class(request(width=256, height=256)) == 1 / 16
    assert speed.estimate(large) == pytest.approx(4 * speed.estimate(small))
    assert speed.estimate(request(count=2, width=512, height=512)) == pytest.approx(
        2 * speed.estimate(small)
    )
    speed.record([small], 0.1)  # the first measurement replaces the default
    assert speed.estimate(small) == pytest.approx(0.1)
    speed.record([small], 0.2)
    assert 0.1 < speed.estimate(small) < 0.2
    assert speed.estimate(large) == pytest.approx(4.0), "other classes keep their default"


def test_image_jobs_cost_their_real_steps_and_tiles() -> None:
    from fluxbot.core.edits import ImageEdit, Operation

    speed = SpeedModel(default_s_per_megapixel_step=1.0)
    text = request(width=1024, height=1024)
    subtle = ImageEdit(Operation.VARY, source_sha256="ab" * 32, strength=0.35)
    vary = request(width=1024, height=1024, edit=subtle)
    assert speed.estimate(vary) == pytest.approx(speed.estimate(text) / 2)  # 2 of 4 steps
    tiles = ImageEdit(Operation.UPSCALE, source_sha256="ab" * 32, strength=0.3, tile=1152)
    upscale = request(width=2048, height=2048, edit=tiles)
    assert size_class(upscale) == 2.0  # one 1088x1088 tile, not the 4-megapixel target
    assert speed.estimate(upscale) == pytest.approx(2.0 * 4 * 2)  # 4 tiles x 2 steps
