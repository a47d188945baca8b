"""The `fluxbot` command as a user runs it (real subprocesses for determinism across processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fluxbot.cli.main import main
from fluxbot.engine.encoding import read_parameters


def fluxbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxbot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_generate_writes_a_png_with_parameters_and_is_reproducible(tmp_path: Path) -> None:
    args = ("generate", "--model", "tiny-random", "a red fox", "--seed", "42", "--steps", "2")
    first = fluxbot(*args, "--width", "256", "--height", "256", "--out", "a.png", cwd=tmp_path)
    second = fluxbot(*args, "--width", "256", "--height", "256", "--out", "b.png", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    a, _b = (tmp_path / "a.png").read_bytes(), (tmp_path / "b.png").read_bytes()
    params = read_parameters(a)
    assert params["prompt"] == "a red fox" and params["seed"] == 42
    assert params["model"] == "tiny-random" and params["steps"] == 2
    with Image.open(tmp_path / "a.png") as x, Image.open(tmp_path / "b.png") as y:
        assert x.size == (256, 256)
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert "seed=42" in first.stdout
    assert "loading tiny-random on cpu" in first.stderr  # said before the model loads


@pytest.mark.parametrize(("name", "magic"), [("fox.jpg", b"\xff\xd8\xff"), ("fox.webp", b"RIFF")])
def test_generate_writes_the_format_its_extension_names_with_parameters(
    tmp_path: Path, name: str, magic: bytes
) -> None:
    args = ("generate", "a fox", "--model", "tiny-random", "--seed", "5", "--steps", "1")
    code = main([*args, "--width", "256", "--height", "256", "--out", str(tmp_path / name)])
    assert code == 0
    data = (tmp_path / name).read_bytes()
    assert data.startswith(magic)
    params = read_parameters(data)
    assert (params["prompt"], params["seed"], params["model"]) == ("a fox", 5, "tiny-random")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seed", "-1", "a fox"], "seed"),
        (["--width", "13", "a fox"], "width 13"),
        (["   "], "prompt"),
        (["a fox --ar 5:4"], "16:9"),
        (["--steps", "99", "a fox"], "steps 99 is not allowed: a whole number from 1 to 8"),
        (["--steps", "0", "a fox"], "steps 0 is not allowed: a whole number from 1 to 8"),
        (["--steps", "9", "a fox"], "steps 9 is not allowed: a whole number from 1 to 8"),
        (["a fox --steps 0"], "--steps '0' is not allowed: a whole number from 1 to 8"),
        pytest.param(
            ["--device", "cuda:0", "a fox"],
            "--device 'cuda:0' is not a device on this machine: use one of cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here"),
        ),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["generate", "--model", "tiny-random", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err and needle in err[-1] and err[-1].startswith("fluxbot: error:")


def test_generate_count_writes_one_file_per_seed(tmp_path: Path) -> None:
    code = main(
        [
            "generate",
            "--model",
            "tiny-random",
            "a fox --count 2",
            "--seed",
            "9",
            "--width",
            "256",
            "--height",
            "256",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "fox.png"),
        ]
    )
    assert code == 0
    assert [read_parameters((tmp_path / f"fox-{i}.png").read_bytes())["seed"] for i in (1, 2)] == [
        9,
        10,
    ]


def test_animate_writes_a_gif(tmp_path: Path) -> None:
    out = tmp_path / "morph.gif"
    code = main(
        [
            "animate",
            "--model",
            "tiny-random",
            "a fox",
            "--seed",
            "1",
            "--seed-to",
            "2",
            "--frames",
            "3",
            "--width",
            "256",
            "--height",
            "256",
            "--steps",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.read_bytes().startswith(b"GIF89a")


def test_a_bad_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXBOT_USER_QUEUE_CAP", "lots")
    assert main(["gpus"]) == 2
    assert "FLUXBOT_USER_QUEUE_CAP='lots'" in capsys.readouterr().err


def test_run_without_a_token_says_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN" in err and ".env" in err and "developers" in err


def test_gpus_prints_the_device_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus"]) == 0
    assert "cpu" in capsys.readouterr().out.lower()


def test_db_upgrade_creates_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXBOT_DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "data" / "fluxbot.db").stat().st_size > 0


def test_vary_a_file_is_reproducible_and_says_where_it_came_from(
    tmp_path: Path, tiny_runner, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from fluxbot.core.requests import GenerationRequest
    from fluxbot.engine.encoding import encode_result

    made = tiny_runner.generate([GenerationRequest("a red fox", 4, width=256, height=256, steps=2)])
    (tmp_path / "a.png").write_bytes(encode_result(made[0], "tiny-random")[0].data)
    args = ("vary", "--model", "tiny-random", "a.png", "--seed", "9", "--strong")
    first = fluxbot(*args, "--out", "v1.png", cwd=tmp_path)  # another process
    assert first.returncode == 0, first.stderr
    assert "vary (strength 0.7)" in first.stderr
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", "v2.png"]) == 0
    params = read_parameters((tmp_path / "v1.png").read_bytes())
    assert params["prompt"] == "a red fox" and params["seed"] == 9 and params["steps"] == 2
    assert params["edit"]["operation"] == "vary" and params["edit"]["strength"] == 0.7
    with Image.open(tmp_path / "v1.png") as x, Image.open(tmp_path / "v2.png") as y:
        assert x.size == (256, 256)
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_image_options_are_checked_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [
        (["generate", "fox", "--image", str(tmp_path / "notes.txt")], "a PNG, JPEG or WebP"),
        (["generate", "fox", "--strength", "0.5"], "used only with --image"),
        (["vary", str(tmp_path / "notes.txt")], "a PNG, JPEG or WebP"),
        (["pan", "abc123"], "--direction"),
        (["zoom", "nosuchjob"], "a job id from the store or a file"),
    ]
    for argv, message in cases:
        assert main([*argv, "--model", "tiny-random"]) == 2, argv
        assert message in capsys.readouterr().err
