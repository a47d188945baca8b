"""The studio shows every user-facing error as the same sentence Discord shows (one table), and
any other error as a short code that is logged with its traceback, never the traceback."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("gradio", reason="the web studio needs the fluxbot[web] extra")

from fluxbot.web.ui import NotSignedIn, gradio_error
from tests.user_errors import EXAMPLES, user_error_classes


def test_every_user_error_class_has_an_example() -> None:
    missing = user_error_classes() - set(EXAMPLES)
    assert not missing, f"add an example to tests/user_errors.py for {sorted(missing, key=str)}"


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda kind: kind.__name__)
def test_the_studio_shows_the_same_sentence_as_discord(kind: type[Exception]) -> None:
    error, expected = EXAMPLES[kind]
    try:
        raise error
    except Exception as exc:
        shown = gradio_error(exc)
    assert shown.message == expected


def test_an_unexpected_error_shows_a_code_that_is_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="fluxbot.app.user_messages")
    try:
        raise RuntimeError("a bug with a secret path /srv/fluxbot")
    except RuntimeError as exc:
        shown = gradio_error(exc).message
    assert shown.startswith("Something went wrong on our side (error `")
    code = shown.split("`")[1]
    logged = [r for r in caplog.records if code in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "RuntimeError" not in shown and "/srv/fluxbot" not in shown


def test_an_ended_session_says_to_log_in_again() -> None:
    assert "log in again" in gradio_error(NotSignedIn()).message
