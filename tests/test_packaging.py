"""What ships beside the code: the Dockerfile, compose file and systemd unit run commands that
exist and install the way the README says (CI cannot build the image in its time), the LICENSE."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import yaml

from fluxbot.cli.main import EXIT_USAGE, build_parser

REPO = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (REPO / "README.md").read_text()


def _subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)  # type: ignore[arg-type]


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def test_the_dockerfile_installs_as_the_readme_says() -> None:
    runs = [rest for instruction, rest in _dockerfile() if instruction == "RUN"]
    installs = [step.strip() for run in runs for step in run.split("&&") if "pip install" in step]
    assert installs == ["pip install torch", "pip install ."]
    readme = _readme()
    assert "pip install torch && pip install ." in readme
    for step in installs:
        assert f"\n  {step}\n" in readme  # the README's own install block, line for line


def test_the_image_runs_and_checks_commands_that_exist() -> None:
    steps = dict(_dockerfile())
    cmd = json.loads(steps["CMD"])
    health = steps["HEALTHCHECK"]
    health_cmd = json.loads(health[health.index("CMD") + 3 :].strip())
    assert cmd == ["fluxbot", "run"] and health_cmd == ["fluxbot", "health"]
    assert {cmd[1], health_cmd[1]} <= _subcommands()
    env = dict(pair.split("=", 1) for pair in shlex.split(steps["ENV"]))
    volumes = json.loads(steps["VOLUME"])
    assert sorted(volumes) == sorted([env["FLUXBOT_DATA_DIR"], env["HF_HOME"]])
    assert steps["USER"] != "root"


def test_compose_mounts_the_data_and_hub_cache_and_reads_env() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["fluxbot"]
    env = dict(_dockerfile())["ENV"]
    mounted = {volume.split(":")[1] for volume in service["volumes"]}
    assert mounted == {
        service["environment"]["FLUXBOT_DATA_DIR"],
        service["environment"]["HF_HOME"],
    }
    assert all(f"{name}={path}" in env for name, path in service["environment"].items())
    assert service["env_file"] == ".env"
    assert service["healthcheck"]["test"] == ["CMD", "fluxbot", "health"]
    (gpu,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert ".env" in (REPO / ".dockerignore").read_text().split()  # never baked into the image


def test_the_systemd_unit_runs_fluxbot_and_does_not_retry_a_bad_setting() -> None:
    unit = dict(
        line.split("=", 1)
        for line in (REPO / "deploy" / "fluxbot.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    program, command = shlex.split(unit["ExecStart"])
    assert program.endswith("/fluxbot") and command in _subcommands()
    assert unit["RestartPreventExitStatus"] == str(EXIT_USAGE)
    assert "deploy/fluxbot.service" in _readme()


def test_the_readme_walks_through_invite_and_says_no_privileged_intent() -> None:
    readme = _readme()
    assert "fluxbot invite" in readme and "invite" in _subcommands()
    assert "No privileged intent is needed" in readme
    assert "bot applications.commands" in readme


def test_the_license_is_the_apache_2_text_pyproject_names() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    text = (REPO / "LICENSE").read_text()
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 180
