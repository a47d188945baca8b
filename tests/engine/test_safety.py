"""Image safety: the real NudeNet model (from its wheel, through onnxruntime) on real images."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fluxbot.core.requests import AnimationSpec, GenerationRequest, GenerationResult
from fluxbot.engine.encoding import encode_result
from fluxbot.engine.safety import (
    EXPLICIT_LABELS,
    NUDENET_LABELS,
    NudeNetClassifier,
    SafetyCheckedEncoder,
    SafetyVerdict,
    classify_files,
    letterbox,
)


@pytest.fixture(scope="module")
def classifier() -> NudeNetClassifier:
    return NudeNetClassifier()


def landscape(width: int = 1024, height: int = 768) -> Image.Image:
    """A drawn landscape: sky gradient, sun, hills, a house: nothing the detector should flag."""
    sky = np.linspace([90, 150, 230], [200, 225, 250], height, dtype=np.float32)
    pixels = np.repeat(sky[:, None, :], width, axis=1).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.7, 60, width * 0.7 + 120, 180), fill=(255, 220, 90))
    draw.polygon([(0, height), (width * 0.4, height * 0.5), (width, height)], fill=(60, 140, 70))
    draw.rectangle((width * 0.2, height * 0.6, width * 0.35, height * 0.8), fill=(150, 90, 60))
    return image


def result_of(
    images: list[Image.Image], animation: AnimationSpec | None = None
) -> GenerationResult:
    request = GenerationRequest(
        prompt="a house in the hills", seed=7, width=64, height=64, count=1, animation=animation
    )
    seeds = [7 + i for i in range(len(images))]
    return GenerationResult(request, images, seeds, "cpu")


def test_letterbox_keeps_the_aspect_and_pads_black() -> None:
    blob = letterbox(landscape(1024, 512))
    assert blob.shape == (1, 3, 320, 320) and blob.dtype == np.float32
    assert blob[0, :, :160, :].max() > 0.3, "the picture fills the top half"
    assert blob[0, :, 170:, :].max() == 0.0, "the bottom is padding"


def test_the_real_model_scores_every_label_and_passes_a_landscape(
    classifier: NudeNetClassifier,
) -> None:
    verdict = classifier.classify(landscape())
    assert set(verdict.scores) == set(NUDENET_LABELS)
    assert all(0.0 <= score <= 1.0 for score in verdict.scores.values())
    assert not verdict.flagged and verdict.label == "safe"


def test_the_threshold_decides_the_flag(classifier: NudeNetClassifier) -> None:
    image = landscape()
    scores = classifier.scores(image)
    worst = max(scores[label] for label in EXPLICIT_LABELS)
    strict = NudeNetClassifier(threshold=max(worst, 1e-4))
    assert strict.classify(image).flagged, "a score at the threshold flags"


class CountingClassifier:
    def __init__(self, flag_from: int = 99, fail: bool = False) -> None:
        self.seen = 0
        self.flag_from = flag_from
        self.fail = fail

    def classify(self, image: Image.Image) -> SafetyVerdict:
        if self.fail:
            raise RuntimeError("model broke")
        self.seen += 1
        return SafetyVerdict(self.seen >= self.flag_from, {"FEMALE_BREAST_EXPOSED": 0.1})


def test_the_encoder_attaches_one_verdict_per_png(classifier: NudeNetClassifier) -> None:
    encode = SafetyCheckedEncoder(partial(encode_result, model="tiny-random"), classifier)
    try:
        files = encode(result_of([landscape(64, 64), landscape(64, 64)]))
    finally:
        encode.close()
    assert [f.format for f in files] == ["png", "png"]
    assert all(f.safety is not None and not f.safety.flagged for f in files)


def test_an_animation_gets_one_verdict_from_sampled_frames() -> None:
    counting = CountingClassifier(flag_from=3)
    encode = SafetyCheckedEncoder(partial(encode_result, model="tiny-random"), counting)
    frames = [landscape(64, 64) for _ in range(8)]
    try:
        files = encode(result_of(frames, AnimationSpec(frames=8, seed_to=9)))
    finally:
        encode.close()
    assert len(files) == 1 and files[0].format == "gif"
    assert counting.seen == 3, "first, middle and last frame"
    assert files[0].safety is not None and files[0].safety.flagged, "one flagged frame flags it"


def test_a_failing_check_never_loses_an_image() -> None:
    encode = SafetyCheckedEncoder(
        partial(encode_result, model="tiny-random"), CountingClassifier(fail=True)
    )
    try:
        files = encode(result_of([landscape(64, 64)]))
    finally:
        encode.close()
    assert len(files) == 1 and files[0].safety is None


def test_files_encoded_elsewhere_are_classified_from_their_bytes(
    classifier: NudeNetClassifier,
) -> None:
    (png,) = encode_result(result_of([landscape(256, 256)]), model="tiny-random")
    assert png.safety is None
    (checked,) = classify_files(classifier, [png])
    assert checked.safety is not None and set(checked.safety.scores) == set(NUDENET_LABELS)
    assert checked.data == png.data
    with Image.open(io.BytesIO(checked.data)) as reopened:
        assert reopened.size == (256, 256)


class SizeJudge:
    """Flags the images wider than `wide`, slowly: so parallel checks finish out of order."""

    def __init__(self, wide: int) -> None:
        self.wide = wide

    def classify(self, image: Image.Image) -> SafetyVerdict:
        import time

        time.sleep(0.05 if image.width > self.wide else 0.0)
        return SafetyVerdict(image.width > self.wide, {"FEMALE_BREAST_EXPOSED": image.width / 1e3})


def test_parallel_checks_keep_each_verdict_with_its_image() -> None:
    encode = SafetyCheckedEncoder(
        partial(encode_result, model="tiny-random"), SizeJudge(wide=64), threads=4
    )
    images = [landscape(96, 64), landscape(64, 64), landscape(96, 64), landscape(32, 32)]
    try:
        files = encode(result_of(images))
    finally:
        encode.close()
    assert [f.safety.flagged if f.safety else None for f in files] == [True, False, True, False]
    assert [f.width for f in files] == [96, 64, 96, 32]
