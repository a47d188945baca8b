"""What every worker shares: error descriptions users and logs see."""

from __future__ import annotations

from fluxbot.serving.workers.base import describe_error


def test_error_description_is_one_line() -> None:
    text = describe_error(RuntimeError("first line\n  File x.py, line 3\nmore"))
    assert text == "RuntimeError: first line"
    assert describe_error(KeyError()) == "KeyError"
