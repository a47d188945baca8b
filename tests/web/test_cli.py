"""`fluxbot web` refuses clearly: without its extra, and on an open host without Discord login."""

from __future__ import annotations

import sys

import pytest

from fluxbot.cli.main import main


def test_without_the_extra_it_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["web"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'fluxbot[web]'" in err and "\n" not in err


@pytest.mark.parametrize("command", ["web", "run"])
def test_an_open_host_without_oauth_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setenv("FLUXBOT_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("FLUXBOT_WEB_PORT", "8080")
    monkeypatch.setenv("DISCORD_TOKEN", "x")
    assert main([command]) == 2
    err = capsys.readouterr().err.strip()
    assert "FLUXBOT_WEB_HOST='0.0.0.0'" in err and "FLUXBOT_DISCORD_CLIENT_ID" in err
    assert "\n" not in err


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("FLUXBOT_WEB_PORT", "99999", "FLUXBOT_WEB_PORT='99999'"),
        ("FLUXBOT_WEB_BASE_URL", "studio.example.org", "an http(s) URL"),
        ("FLUXBOT_DISCORD_CLIENT_ID", "abc", "FLUXBOT_DISCORD_CLIENT_ID='abc'"),
    ],
)
def test_web_settings_are_validated(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    needle: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["web"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_invite_shows_the_studio_redirect_uri(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["invite", "--client-id", "1"]) == 0
    assert "http://127.0.0.1:7860/auth/callback" in capsys.readouterr().out
    monkeypatch.setenv("FLUXBOT_WEB_BASE_URL", "https://studio.example.org/flux/")
    assert main(["invite", "--client-id", "1"]) == 0
    assert "https://studio.example.org/flux/auth/callback as a redirect URI" in (
        capsys.readouterr().out
    )
