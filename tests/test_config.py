"""Settings: names, defaults, validation messages, and .env.example listing every one."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxbot.config import (
    ConfigError,
    MemoryProfile,
    Settings,
    load_settings,
    misspelled_settings,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model == "black-forest-labs/FLUX.1-schnell"
    assert settings.gpus == "all" and settings.discord_token is None
    assert settings.db_url.startswith("sqlite+aiosqlite:///") and settings.db_url.endswith(
        "fluxbot.db"
    )


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc\nFLUXBOT_ADMIN_IDS=1, 2\n")
    monkeypatch.setenv("FLUXBOT_MEMORY_PROFILE", "fp8")
    monkeypatch.setenv("FLUXBOT_DEV_GUILD", "")
    settings = load_settings()
    assert settings.discord_token.get_secret_value() == "abc"
    assert settings.admin_ids == frozenset({1, 2})
    assert settings.memory_profile is MemoryProfile.FP8 and settings.dev_guild is None


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("FLUXBOT_GPUS", "first", "FLUXBOT_GPUS='first'"),
        ("FLUXBOT_MEMORY_PROFILE", "huge", "'auto', 'full', 'fp8', 'offload' or 'lowvram'"),
        ("FLUXBOT_LOG_LEVEL", "loud", "DEBUG, INFO"),
        ("FLUXBOT_ADMIN_IDS", "me", "FLUXBOT_ADMIN_IDS"),
        ("FLUXBOT_MAX_STEPS", "0", "FLUXBOT_MAX_STEPS='0'"),
    ],
)
def test_a_wrong_value_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_env_example_lists_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    names = {
        line.split("=", 1)[0]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    expected = {"DISCORD_TOKEN"} | {
        f"FLUXBOT_{field.upper()}" for field in Settings.model_fields if field != "discord_token"
    }
    assert names == expected


def test_the_owners_env_file_is_never_committed() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".env.example" not in ignored


def test_misspelled_settings_name_the_closest_one(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("FLUXBOT_MAX_STEP=4\nFLUXBOT_MODEL=tiny-random\n")
    warnings = misspelled_settings({"FLUXBOT_ZZZ": "1", "HOME": "/root"}, env_file)
    assert warnings == [
        f"FLUXBOT_MAX_STEP (in {env_file}) is not a fluxbot setting and is ignored; "
        "did you mean FLUXBOT_MAX_STEPS?",
        "FLUXBOT_ZZZ (in the environment) is not a fluxbot setting and is ignored; "
        "see .env.example for them all",
    ]
