"""A new owner's first hour: every start-up failure is one line and the right exit code,
found before the model loads or Discord is contacted (`python -m fluxbot` as a subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxbot.store import Store
from tests.store.helpers import encoded, make_request

BAD_PORT_HOST = "127.0.0.1"


def fluxbot(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; settings come from `env` (the test env is clean)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fluxbot", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line; the output must carry no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fluxbot: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((BAD_PORT_HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    """What `fluxbot run` needs, pointed at a Discord that is not there: reaching the network
    at all would end with exit code 1, so exit code 2 proves the check came first."""
    return {
        "DISCORD_TOKEN": "not-a-real-token",
        "FLUXBOT_MODEL": "tiny-random",
        "FLUXBOT_GPUS": "cpu",
        "FLUXBOT_DATA_DIR": str(tmp_path / "data"),
        "FLUXBOT_DISCORD_API_BASE": f"http://{BAD_PORT_HOST}:{closed_port()}/api/v10",
        "FLUXBOT_LOGIN_TIMEOUT_S": "2",
    }


# -- the model -------------------------------------------------------------------------------------


def test_a_model_path_that_does_not_exist_stops_run_before_discord(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = fluxbot("run", cwd=tmp_path, env={**run_env, "FLUXBOT_MODEL": "/nonexistent"})
    line = one_error_line(result)
    assert result.returncode == 2
    assert "FLUXBOT_MODEL='/nonexistent'" in line and "no such directory" in line
    assert "hf download /nonexistent" not in line


def test_a_directory_that_is_not_a_diffusers_model_is_refused(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    (tmp_path / "weights").mkdir()
    result = fluxbot(
        "run", cwd=tmp_path, env={**run_env, "FLUXBOT_MODEL": str(tmp_path / "weights")}
    )
    assert result.returncode == 2
    assert "model_index.json" in one_error_line(result)


def test_a_hub_model_not_cached_while_offline_is_refused(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    env = {**run_env, "FLUXBOT_MODEL": "some-org/not-cached", "HF_HOME": str(tmp_path / "hf")}
    result = fluxbot("run", cwd=tmp_path, env=env)
    line = one_error_line(result)
    assert result.returncode == 2
    assert "'some-org/not-cached' is not in the Hugging Face cache" in line
    assert "HF_HUB_OFFLINE" in line


def test_generate_checks_the_model_before_loading_anything(tmp_path: Path) -> None:
    result = fluxbot("generate", "a fox", "--model", "./missing", cwd=tmp_path)
    assert result.returncode == 2
    assert "--model='./missing': no such directory" in one_error_line(result)
    assert "loading" not in result.stderr


# -- reaching Discord ------------------------------------------------------------------------------


def test_login_refused_retries_then_says_so_in_one_line(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = fluxbot("run", cwd=tmp_path, env=run_env)
    line = one_error_line(result)
    assert result.returncode == 1
    assert f"cannot reach Discord at {run_env['FLUXBOT_DISCORD_API_BASE']}/users/@me" in line
    assert "connection refused (2 attempt(s)" in line
    assert "retrying in 1 s" in result.stderr


def test_login_to_a_name_that_does_not_resolve_says_so(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    env = {**run_env, "FLUXBOT_DISCORD_API_BASE": "http://fluxbot-test.invalid/api/v10"}
    result = fluxbot("run", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "fluxbot-test.invalid/api/v10/users/@me: the host name does not resolve" in (
        one_error_line(result)
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind((BAD_PORT_HOST, 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_login_to_a_server_that_never_answers_times_out(
    tmp_path: Path, run_env: dict[str, str], silent_server: int
) -> None:
    env = {**run_env, "FLUXBOT_DISCORD_API_BASE": f"http://{BAD_PORT_HOST}:{silent_server}/api"}
    result = fluxbot("run", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1
    assert "no answer within 2 s (1 attempt(s)" in one_error_line(result)


# -- the database URL, the data dir and the database file ------------------------------------------


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("garbage", ["FLUXBOT_DATABASE_URL='garbage' is not a database URL"]),
        (
            "postgresql+psycopg://bot:s3cret@localhost/fluxbot",
            ["needs the driver 'psycopg'", "pip install 'psycopg[binary]'"],
        ),
        ("sqlite:///x.db", ["'pysqlite', which is not async"]),
    ],
)
def test_a_database_url_is_validated_at_start(
    tmp_path: Path, run_env: dict[str, str], url: str, needles: list[str]
) -> None:
    result = fluxbot("run", cwd=tmp_path, env={**run_env, "FLUXBOT_DATABASE_URL": url})
    line = one_error_line(result)
    assert result.returncode == 2
    assert all(needle in line for needle in needles), line
    assert "s3cret" not in result.stderr


def _data_dir_is_a_file(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.write_text("not a directory")
    return path


def _data_dir_read_only(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    path.chmod(0o555)
    return path


def _data_dir_under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "blocker").write_text("")
    return tmp_path / "blocker" / "data"


@pytest.mark.parametrize(
    ("make", "needle", "command"),
    [
        (_data_dir_is_a_file, "is a file, not a directory", ["run"]),
        (_data_dir_read_only, "is not writable (mode 0555)", ["run"]),
        (_data_dir_under_a_file, "cannot be created", ["run"]),
        (_data_dir_read_only, "is not writable (mode 0555)", ["db", "upgrade"]),
    ],
)
def test_an_unusable_data_dir_is_one_line_and_exit_2(
    tmp_path: Path, run_env: dict[str, str], make, needle: str, command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    data_dir = make(tmp_path)
    result = fluxbot(*command, cwd=tmp_path, env={**run_env, "FLUXBOT_DATA_DIR": str(data_dir)})
    line = one_error_line(result)
    assert result.returncode == 2
    assert f"FLUXBOT_DATA_DIR='{data_dir}'" in line and needle in line


def _migrated_database(data_dir: Path) -> Path:
    async def create() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'fluxbot.db'}", data_dir)
        for seed in range(40):  # a few pages of rows
            await store.jobs.create(7, make_request(prompt="x" * 500, seed=seed))
        await store.close()

    asyncio.run(create())
    with sqlite3.connect(data_dir / "fluxbot.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return data_dir / "fluxbot.db"


def _read_only(path: Path) -> None:
    path.chmod(0o444)


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _garbage_pages(path: Path) -> None:
    """A valid header and first page, then garbage where the tables' pages were."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for offset in range(page_size, len(data), 97):
        data[offset] = (data[offset] + 0x5A) % 256
    path.write_bytes(bytes(data))


READ_ONLY = ["is read-only (mode 0444)", "chmod u+w"]
NOT_A_DATABASE = ["is not an SQLite database", "mv ", ".broken"]
DAMAGED = ["is damaged", "mv ", ".broken", "restore it from a backup"]


@pytest.mark.parametrize(
    ("damage", "needles", "command"),
    [
        (_read_only, READ_ONLY, ["run"]),
        (_random_bytes, NOT_A_DATABASE, ["run"]),
        (_garbage_pages, DAMAGED, ["run"]),
        (_garbage_pages, DAMAGED, ["db", "upgrade"]),
        (_read_only, READ_ONLY, ["db", "upgrade"]),
        (_garbage_pages, DAMAGED, ["export", "--user", "7"]),
    ],
)
def test_a_bad_database_file_is_named_and_left_untouched(
    tmp_path: Path, run_env: dict[str, str], damage, needles: list[str], command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    database = _migrated_database(data_dir)
    damage(database)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    if command[0] == "export":
        command = [*command, "--out", str(tmp_path / "out.zip")]
    result = fluxbot(*command, cwd=tmp_path, env=run_env)
    line = one_error_line(result)
    assert result.returncode == 2
    assert str(database) in line and all(needle in line for needle in needles), line
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert not (tmp_path / "out.zip").exists()


# -- export ----------------------------------------------------------------------------------------


def test_export_prints_a_sentence_and_an_unknown_user_is_an_error(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"

    async def fill() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'fluxbot.db'}", data_dir)
        await store.finish_job(await store.jobs.create(7, make_request(seed=1)), [encoded(1)])
        await store.close()

    asyncio.run(fill())
    known = fluxbot("export", "--user", "7", "--out", "seven.zip", cwd=tmp_path, env=run_env)
    assert known.returncode == 0, known.stderr
    assert known.stdout.strip() == "Wrote seven.zip: 1 image(s) from 1 job(s) of user 7."
    unknown = fluxbot("export", "--user", "8", "--out", "eight.zip", cwd=tmp_path, env=run_env)
    assert unknown.returncode == 2
    assert "user 8 is not in the database" in one_error_line(unknown)
    assert not (tmp_path / "eight.zip").exists()


def test_export_without_a_database_does_not_create_one(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    result = fluxbot("export", "--user", "7", "--out", "x.zip", cwd=tmp_path, env=run_env)
    assert result.returncode == 2
    assert "there is no database at" in one_error_line(result)
    assert not (tmp_path / "data" / "fluxbot.db").exists()


# -- generate and animate: validated before generating ---------------------------------------------

TINY = ("--model", "tiny-random", "--width", "256", "--height", "256", "--steps", "1")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--device", "banana"], "--device 'banana' is not a device on this machine: use one of"),
        (["--out", "fox.bmp"], "the file name must end in .png, .jpg, .jpeg, .webp"),
        (["--out", "locked/fox.png"], "is not writable (mode 0555)"),
    ],
)
def test_generate_refuses_bad_options_before_loading_the_model(
    tmp_path: Path, extra: list[str], needle: str
) -> None:
    (tmp_path / "locked").mkdir(mode=0o555)
    result = fluxbot("generate", "a fox", *TINY, *extra, cwd=tmp_path)
    assert result.returncode == 2
    assert needle in one_error_line(result)
    assert "loading tiny-random" not in result.stderr
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.bmp"))


@pytest.mark.parametrize("fps", ["0", "-3"])
def test_animate_checks_fps_before_generating_frames(tmp_path: Path, fps: str) -> None:
    result = fluxbot("animate", "a fox", *TINY, "--fps", fps, cwd=tmp_path)
    assert result.returncode == 2
    assert f"fps {float(fps)} is not allowed: a number from 0.5 to 50" in one_error_line(result)
    assert "loading tiny-random" not in result.stderr


# -- devices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["gpus"], ["run"]])
def test_a_gpu_that_does_not_exist_is_exit_2_for_gpus_and_run(
    tmp_path: Path, run_env: dict[str, str], command: list[str]
) -> None:
    result = fluxbot(*command, cwd=tmp_path, env={**run_env, "FLUXBOT_GPUS": "7"})
    assert result.returncode == 2
    assert "FLUXBOT_GPUS=7: no such GPU 7" in one_error_line(result)


def test_gpus_describes_what_run_does_with_tiny_random_on_the_cpu(tmp_path: Path) -> None:
    result = fluxbot("gpus", cwd=tmp_path, env={"FLUXBOT_MODEL": "tiny-random"})
    assert result.returncode == 0, result.stderr
    cpu_row = next(line for line in result.stdout.splitlines() if line.startswith("*  cpu"))
    assert cpu_row.rstrip().endswith("full") and "refused" not in result.stdout
    assert "tiny-random: a few MB" in result.stdout


# -- settings --------------------------------------------------------------------------------------


def test_a_misspelled_setting_warns_once_naming_the_closest(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FLUXBOT_MODLE=tiny-random\n")
    result = fluxbot("invite", "--client-id", "1", cwd=tmp_path, env={"FLUXBOT_GUPS": "0"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "is not a fluxbot setting" in line]
    assert len(warnings) == 2, result.stderr
    assert "FLUXBOT_MODLE (in .env)" in warnings[1] and "did you mean FLUXBOT_MODEL?" in warnings[1]
    assert "FLUXBOT_GUPS (in the environment)" in warnings[0]
    assert "did you mean FLUXBOT_GPUS?" in warnings[0]


def test_commands_are_quiet_about_alembic_plugins(tmp_path: Path, run_env: dict[str, str]) -> None:
    result = fluxbot("db", "upgrade", cwd=tmp_path, env=run_env)
    assert result.returncode == 0, result.stderr
    assert "alembic.runtime.plugins" not in result.stderr
    assert "Running upgrade" in result.stderr  # what changes the database is still said


# -- invite ----------------------------------------------------------------------------------------


def test_invite_prints_the_url_with_exactly_the_permissions_the_bot_uses(tmp_path: Path) -> None:
    import base64

    import discord

    app_id = 123456789012345678
    token = f"{base64.b64encode(str(app_id).encode()).decode().rstrip('=')}.GaBcDe.{'x' * 38}"
    result = fluxbot("invite", cwd=tmp_path, env={"DISCORD_TOKEN": token})
    assert result.returncode == 0, result.stderr
    url = result.stdout.splitlines()[0]
    wanted = discord.Permissions(
        view_channel=True,
        send_messages=True,
        embed_links=True,
        attach_files=True,
        add_reactions=True,
        read_message_history=True,
    )
    assert url == (
        f"https://discord.com/oauth2/authorize?client_id={app_id}"
        f"&scope=bot%20applications.commands&permissions={wanted.value}"
    )
    assert "no privileged intent is needed" in result.stdout
    missing = fluxbot("invite", cwd=tmp_path)
    assert missing.returncode == 2 and "--client-id" in one_error_line(missing)
