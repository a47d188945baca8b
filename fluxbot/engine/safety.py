"""Image safety: an offline nudity detector run on each finished image before it is posted.

The detector is NudeNet's small ONNX model, shipped inside the `nudenet` wheel and run through
onnxruntime on the CPU (nothing is downloaded). fluxbot feeds it itself from the PIL image it
already has (a 320x320 letterbox, as NudeNet does), so no PNG decode or OpenCV sits in the way,
and it keeps one score per label (the best box of that label) instead of drawing boxes.
It runs on its own CPU thread beside the PNG encoder (see `SafetyCheckedEncoder`), off the GPU's
path: at about 30 ms of CPU an image (1024², one thread) it finishes inside the time the PNG
encoder takes for the same image, so it adds no wait.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fluxbot.engine.verdict import EXPLICIT_LABELS, SafetyVerdict

if TYPE_CHECKING:
    from PIL import Image

    from fluxbot.core.requests import GenerationResult
    from fluxbot.engine.encoding import EncodedImage

log = logging.getLogger(__name__)

NUDENET_INPUT = 320
DEFAULT_THRESHOLD = 0.5
# NudeNet's labels, in the order of the model's output rows.
NUDENET_LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
# Frames of an animation that are checked (first, middle, last): enough for a smooth morph.
ANIMATION_SAMPLES = 3


class ImageClassifier(Protocol):
    """Anything that judges one image; called on a CPU thread, never on the event loop."""

    def classify(self, image: Image.Image) -> SafetyVerdict: ...


class SafetyUnavailable(RuntimeError):
    """The classifier could not be loaded (package missing or model unreadable)."""


def letterbox(image: Image.Image, size: int = NUDENET_INPUT) -> np.ndarray:
    """The model's input: RGB scaled so the longer side is `size`, padded black at the right and
    bottom (NudeNet pads first and scales after: the same picture), float32 NCHW in [0, 1]."""
    from PIL import Image as PILImage

    rgb = image.convert("RGB")
    factor = max(rgb.width, rgb.height) // size
    if factor >= 2:
        # Box-reduce by a whole factor first: 1024² -> 320² costs ~2.7 ms instead of ~5.
        rgb = rgb.reduce(factor)
    scale = size / max(rgb.width, rgb.height)
    width = max(1, min(size, round(rgb.width * scale)))
    height = max(1, min(size, round(rgb.height * scale)))
    small = rgb.resize((width, height), PILImage.Resampling.BILINEAR)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[:height, :width] = np.asarray(small, dtype=np.float32) * (1.0 / 255.0)
    return canvas.transpose(2, 0, 1)[None]


class NudeNetClassifier:
    """NudeNet's 320n detector through onnxruntime, scores per label, flagged above `threshold`."""

    def __init__(
        self, *, threshold: float = DEFAULT_THRESHOLD, threads: int = 1, model_path: str = ""
    ) -> None:
        try:
            import onnxruntime

            path = model_path or str(resources.files("nudenet") / "320n.onnx")
            options = onnxruntime.SessionOptions()
            # One thread: it runs beside the PNG encoders and the device thread, on few cores.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ImportError, a missing or unreadable model file
            raise SafetyUnavailable(f"the image-safety model could not be loaded: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self.threshold = threshold

    def scores(self, image: Image.Image) -> dict[str, float]:
        """Each label's best score over all candidate boxes."""
        (output,) = self._session.run(None, {self._input: letterbox(image)})
        per_label = output[0, 4 : 4 + len(NUDENET_LABELS), :].max(axis=1)
        return {
            label: round(float(score), 4)
            for label, score in zip(NUDENET_LABELS, per_label, strict=True)
        }

    def classify(self, image: Image.Image) -> SafetyVerdict:
        scores = self.scores(image)
        flagged = any(scores[label] >= self.threshold for label in EXPLICIT_LABELS)
        return SafetyVerdict(flagged, scores)


def _samples(images: Sequence[Image.Image], animated: bool) -> list[Image.Image]:
    if not animated or len(images) <= ANIMATION_SAMPLES:
        return list(images)
    last = len(images) - 1
    return [images[0], images[last // 2], images[last]]


def combine(verdicts: Sequence[SafetyVerdict]) -> SafetyVerdict:
    """One verdict for several images (an animation's frames): flagged if any is; worst scores."""
    scores: dict[str, float] = {}
    for verdict in verdicts:
        for label, score in verdict.scores.items():
            scores[label] = max(score, scores.get(label, 0.0))
    return SafetyVerdict(any(v.flagged for v in verdicts), scores)


def classify_files(
    classifier: ImageClassifier, files: Sequence[EncodedImage]
) -> list[EncodedImage]:
    """Verdicts for images that arrived without one (encoded elsewhere, e.g. on a Ray worker)."""
    import io

    from PIL import Image as PILImage
    from PIL import ImageSequence

    checked = []
    for encoded in files:
        if encoded.safety is not None:
            checked.append(encoded)
            continue
        with PILImage.open(io.BytesIO(encoded.data)) as opened:
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(opened)]
        sampled = _samples(frames, animated=len(frames) > 1)
        verdict = combine([classifier.classify(frame) for frame in sampled])
        checked.append(replace(encoded, safety=verdict))
    return checked


def default_threads() -> int:
    """Threads for the checks: up to one per image of a count-4 job, leaving half the cores to
    the encoders and the device threads (onnxruntime sessions are safe to run concurrently)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class SafetyCheckedEncoder:
    """Wraps a worker's encoder: the classifier runs on its own threads (one image each) while the
    PNGs are encoded, and each encoded image comes back carrying its verdict (None if the check
    failed)."""

    def __init__(
        self,
        encode: Callable[[GenerationResult], list[EncodedImage]],
        classifier: ImageClassifier,
        threads: int | None = None,
    ) -> None:
        self._encode = encode
        self._classifier = classifier
        count = threads or default_threads()
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="safety")

    def _check(self, result: GenerationResult) -> list[Future[SafetyVerdict]]:
        animated = result.request.animation is not None
        return [
            self._pool.submit(self._classifier.classify, image)
            for image in _samples(result.images, animated)
        ]

    def __call__(self, result: GenerationResult) -> list[EncodedImage]:
        started = time.perf_counter()
        checking = self._check(result)
        encoded = self._encode(result)
        try:
            found = [future.result() for future in checking]
            combined = [combine(found)] if result.request.animation is not None else found
            verdicts: list[SafetyVerdict | None] = list(combined)
        except Exception:
            log.exception("the image-safety check failed; the images are posted as unchecked")
            verdicts = [None] * len(encoded)
        if len(verdicts) != len(encoded):
            verdicts = [None] * len(encoded)
        waited = time.perf_counter() - started
        log.debug("encode + safety check of %d image(s): %.3f s", len(encoded), waited)
        return [
            replace(image, safety=verdict) for image, verdict in zip(encoded, verdicts, strict=True)
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
