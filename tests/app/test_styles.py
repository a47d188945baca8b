"""The styles file: parsed, checked at start (one line naming the style, exit 2), listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fluxbot.app.compose import RequestComposer
from fluxbot.app.root import build_composer
from fluxbot.app.styles import StyleCatalog, StylesError, load_styles, parse_styles
from fluxbot.config import load_settings
from fluxbot.core.requests import GenerationRequest, RequestError
from fluxbot.core.styles import LoraSpec, Style
from tests.lora_files import make_foreign_lora

GOOD = """
[styles.ink]
lora = "loras/ink.safetensors"
weight = 0.8
trigger_words = ["inkstyle"]
template = "{prompt}, ink drawing"
negative = "photo"
description = "Ink on paper"

[styles.noir]
template = "{prompt}, film noir, black and white"
"""


@pytest.fixture
def ink_file(tiny_loras: dict[str, Path]) -> Path:
    return tiny_loras["ink"]


def write_styles(folder: Path, text: str, ink: Path | None = None) -> Path:
    (folder / "loras").mkdir(parents=True, exist_ok=True)
    if ink is not None:
        (folder / "loras" / "ink.safetensors").write_bytes(ink.read_bytes())
    path = folder / "styles.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_paths_relative_to_it(tmp_path: Path, ink_file: Path) -> None:
    path = write_styles(tmp_path, GOOD, ink_file)
    settings = load_settings(model="tiny-random", styles=path)
    catalog = load_styles(settings)
    assert [s.name for s in catalog] == ["ink", "noir"]
    ink = catalog.require("ink")
    assert ink.lora == LoraSpec(str((tmp_path / "loras" / "ink.safetensors").resolve()), 0.8)
    assert catalog.require("noir").lora is None
    assert catalog.loras() == [ink.lora]


def test_the_default_file_is_optional_but_a_named_one_must_exist(tmp_path: Path) -> None:
    assert len(load_styles(load_settings(data_dir=tmp_path))) == 0
    with pytest.raises(StylesError, match=r"FLUXBOT_STYLES=.*no such file"):
        load_styles(load_settings(styles=tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[styles.ink]\nlora = "loras/gone.safetensors"\n',
            "style 'ink': LoRA .*gone.safetensors: file .* does not exist",
        ),
        (
            '[styles.ink]\nlora = "loras/ink.safetensors"\nweight = 3\n',
            "style 'ink': weight 3 is out of range: allowed -2 to 2",
        ),
        (
            '[styles.ink]\ntemplate = "ink drawing"\n',
            "style 'ink': template 'ink drawing' has no {prompt} slot",
        ),
        ('[styles.ink]\ncolour = "red"\n', "style 'ink': unknown setting 'colour'"),
        ('[styles."Bad Name"]\ntemplate = "{prompt}"\n', "style 'Bad Name': a style name is"),
        ("[styles.ink]\nweight = 1\n", "style 'ink': weight is set but there is no lora"),
        ("[styles.ink\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_style_and_the_problem(
    tmp_path: Path, ink_file: Path, text: str, needle: str
) -> None:
    path = write_styles(tmp_path, text, ink_file)
    with pytest.raises(StylesError, match=needle):
        load_styles(load_settings(model="tiny-random", styles=path))


def test_a_lora_for_another_model_is_refused(tmp_path: Path) -> None:
    make_foreign_lora((tmp_path / "loras").mkdir() or tmp_path / "loras" / "sdxl.safetensors")
    path = write_styles(tmp_path, '[styles.sd]\nlora = "loras/sdxl.safetensors"\n')
    with pytest.raises(StylesError, match=r"style 'sd': LoRA .*not a linear layer of FLUX"):
        load_styles(load_settings(model="tiny-random", styles=path))


def fluxbot(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "fluxbot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
    )


def test_run_refuses_a_bad_styles_file_with_exit_2(tmp_path: Path, ink_file: Path) -> None:
    path = write_styles(tmp_path, '[styles.ink]\nlora = "loras/ink.safetensors"\nweight = 9\n')
    env = {"FLUXBOT_STYLES": str(path), "FLUXBOT_MODEL": "tiny-random", "DISCORD_TOKEN": "x.y.z"}
    result = fluxbot("run", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "fluxbot: error: style 'ink': weight 9 is out of range: allowed -2 to 2"
    assert "Traceback" not in result.stderr


def test_styles_command_lists_a_good_file(tmp_path: Path, ink_file: Path) -> None:
    path = write_styles(tmp_path, GOOD, ink_file)
    env = {"FLUXBOT_STYLES": str(path), "FLUXBOT_MODEL": "tiny-random"}
    result = fluxbot("styles", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "2 style(s)" in result.stdout
    assert "ink" in result.stdout and "triggers: inkstyle" in result.stdout
    assert "noir" in result.stdout and "prompt preset" in result.stdout


def test_a_style_shapes_the_request(tmp_path: Path, ink_file: Path) -> None:
    path = write_styles(tmp_path, GOOD, ink_file)
    settings = load_settings(model="tiny-random", styles=path)
    catalog = load_styles(settings)
    composer: RequestComposer = build_composer(settings)
    draft = composer.draft("a red fox", style=catalog.require("ink"))
    request = draft.finish(7)
    assert request.prompt == "inkstyle, a red fox, ink drawing"
    assert request.negative == "photo" and request.style == "ink"
    assert request.lora == catalog.require("ink").lora
    again = GenerationRequest.from_params(request.to_params())
    assert again == request  # a reroll keeps the style and its LoRA
    own = composer.draft("a fox", negative="blur", style=catalog.require("ink")).finish(1)
    assert own.negative == "blur"
    plain = composer.draft("a red fox").finish(7)
    assert plain.batch_key() != request.batch_key()
    with pytest.raises(RequestError, match="one of the styles: ink, noir"):
        catalog.require("pastel")


def test_search_is_not_capped_by_the_file_size() -> None:
    styles = tuple(Style(name=f"s{i:03d}", template="{prompt}, look " + str(i)) for i in range(60))
    catalog = StyleCatalog((*styles, Style(name="watercolor", trigger_words=("wtr",))))
    assert len(catalog.search("")) == 25
    assert [s.name for s in catalog.search("s05")] == [f"s05{i}" for i in range(10)]
    assert [s.name for s in catalog.search("wat")] == ["watercolor"]
    assert [s.name for s in catalog.search("wtr")] == ["watercolor"]
    assert catalog.require("s059").name == "s059"  # beyond the first 25 too


def test_parse_keeps_file_order() -> None:
    catalog = parse_styles(GOOD.replace("loras/ink.safetensors", "owner/ink-lora"), Path("x.toml"))
    assert [s.name for s in catalog] == ["ink", "noir"]
    assert catalog.require("ink").lora == LoraSpec("owner/ink-lora", 0.8)
