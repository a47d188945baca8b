"""Logging: the rotating file in the data dir, one line per job, and no token anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fluxbot.core.requests import GenerationRequest, GenerationResult, StageTimings
from fluxbot.logs import RedactSecrets, job_line, setup_logging

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_the_token_never_reaches_the_log_file(tmp_path: Path) -> None:
    setup_logging("INFO", tmp_path, (TOKEN,))
    log = logging.getLogger("fluxbot.test")
    log.info("connecting with %s", TOKEN)
    log.warning("a token-shaped string MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.%s", "x" * 30)
    try:
        raise RuntimeError(f"bad auth {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (tmp_path / "logs" / "fluxbot.log").read_text()
    assert "connecting with [token]" in text and "bad auth [token]" in text
    assert TOKEN not in text and "GaBcDe" not in text
    setup_logging("INFO", None)


def test_one_line_per_job_names_every_stage_and_the_device() -> None:
    request = GenerationRequest(prompt="x", seed=1, width=512, height=512, count=2)
    timings = StageTimings(queued=1.5, text_encode=0.02, denoise=0.5, decode=0.1, image_encode=0.2)
    timings.total = 2.32
    result = GenerationResult(request, [], [1, 2], "cuda:0", timings=timings)
    line = job_line("abc123", result)
    assert "\n" not in line and "cuda:0" in line and "abc123" in line
    for stage in (
        "queued 1.50s",
        "text 0.020s",
        "denoise 0.500s",
        "decode 0.100s",
        "encode 0.200s",
    ):
        assert stage in line


def test_a_repeated_hub_warning_is_shown_once_and_only_through_fluxbots_handlers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO", tmp_path)
    hub = logging.getLogger("huggingface_hub.utils._http")
    for attempt in (1, 2, 3):
        hub.warning("Retrying in %ds [Retry %d/5].", attempt, attempt)
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.types")
    err = capfd.readouterr().err
    assert err.count("Retrying in") == 1 and "Retrying in 1s" in err and "WARNING" in err
    assert "setup plugin" not in err
    setup_logging("DEBUG", None)
    hub.warning("Retrying in 1s [Retry 1/5].")
    hub.warning("Retrying in 1s [Retry 1/5].")
    err = capfd.readouterr().err
    assert err.count("Retrying in 1s") == 2 and "DEBUG   huggingface_hub" in err
    setup_logging("INFO", None)


def test_a_short_placeholder_token_is_not_redacted_inside_words() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "fluxbot example", None, None)
    RedactSecrets(("x",)).filter(record)
    assert record.getMessage() == "fluxbot example"
