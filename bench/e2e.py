"""Time to image as a Discord user feels it: the real bot against the repository's Discord stand-in.

`python -m bench e2e` starts `fluxbot run` (a subprocess, exactly as an operator starts it) for
each speed profile against tests/fake_discord, waits until the bot has compiled what it compiles
(it serves eagerly meanwhile), then runs three scenarios of `/imagine`:

- single: one 1024x1024 image at a time on an idle bot;
- count4: one job of four images at a time;
- burst: 20 jobs from 5 users sent at once;
- mixed: 40 jobs from 5 users sent at once over every aspect preset and counts 1-4: once the
  bot has compiled, no job may recompile (Dynamo's recompile log, `TORCH_LOGS=recompiles`, in
  the bot's output) nor take more than 2x its shape's median GPU time (text + denoise + decode);
- images: image actions (vary, zoom, pan, upscale) pressed on those results one at a time,
  each (result, operation) twice: click -> result posted, and recompiles as above.

Per job, from the fake's own clock (the interaction's dispatch, and when each REST call the bot
made was answered): deferred, queued message, first progress edit, result posted (its upload
done); and from the bot's per-job log line the stages: queue, text, denoise, decode, PNG encode,
plus the upload (the result request's duration). p50/p95 per scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

Log = Callable[[str], None]
MARKS = ("deferred", "queued_message", "first_progress_edit", "result_posted")
STAGES = ("queue", "text", "denoise", "decode", "png_encode", "upload")
JOB_LINE = re.compile(
    r"job (?P<job>\S+) done on \S+: .*?queued (?P<queue>[\d.]+)s text (?P<text>[\d.]+)s "
    r"denoise (?P<denoise>[\d.]+)s decode (?P<decode>[\d.]+)s encode (?P<png_encode>[\d.]+)s"
)
JOB_ID = re.compile(r"`([A-Za-z0-9_-]{4,})`")


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    users: int  # jobs are spread over this many users
    count: int
    concurrent: bool
    mixed: bool = False  # every aspect preset, counts 1-4 (`count` unused)

    def shape(self, i: int) -> tuple[str | None, int]:
        """The aspect preset (None: the bot's default) and count of job `i`."""
        if not self.mixed:
            return None, self.count
        from fluxbot.core.requests import ASPECT_PRESETS

        aspects = list(ASPECT_PRESETS)
        return aspects[i % len(aspects)], 1 + (i // len(aspects)) % 4


def scenarios(
    single: int = 5, count4: int = 3, burst: int = 20, burst_users: int = 5, mixed: int = 40
) -> list[Scenario]:
    plan = [
        Scenario("single", single, 1, 1, False),
        Scenario("count4", count4, 1, 4, False),
        Scenario("burst", burst, burst_users, 1, True),
    ]
    if mixed:
        plan.append(Scenario("mixed", mixed, burst_users, 1, True, mixed=True))
    return plan


RECOMPILE = "Recompiling function"
# Image actions pressed on results (custom id operation codes of fluxbot.bot.cogs.edits):
# the cheap ones first, so a short run still covers img2img and outpainting.
_T = TypeVar("_T")

IMAGE_OPS = ("vary1", "z2", "pl", "up", "vary2", "z15", "pu", "pr", "pd")
BUTTON_JOB = re.compile(r"^flux:img:[a-z0-9]+:([A-Za-z0-9_-]+):\d+$")
SHAPE_COMPILED = re.compile(r"compiled \S+ \(\d+ tokens\) in ([\d.]+) s; jobs of this shape")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 of each mark (seconds after the interaction) and each stage."""
    out: dict[str, Any] = {"jobs": len(jobs)}
    for key in (*MARKS, *STAGES):
        values = [j[key] for j in jobs if j.get(key) is not None]
        out[key] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "n": len(values),
            "mean": statistics.fmean(values) if values else None,
        }
    return out


def _bot_env(server: Any, model: str, profile: str, gpus: str, data_dir: Path) -> dict[str, str]:
    from tests.bot_process import bot_env

    return bot_env(
        server,
        data_dir,
        FLUXBOT_MODEL=model,
        FLUXBOT_GPUS=gpus,
        FLUXBOT_SPEED_PROFILE=profile,
        FLUXBOT_USER_QUEUE_CAP="50",
    )


async def _wait_log(log_path: Path, done: Callable[[str], bool], within_s: float, what: str) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(_read, log_path)
        if done(text):
            return text
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{what}: not within {within_s:g} s")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _compiled_or_eager(text: str) -> bool:
    if "every requested shape compiled" in text or "the compiled path is off" in text:
        return True
    return bool(re.search(r"loaded .* \(memory \S+, speed eager\)", text))


def _job_marks(server: Any, record: Any) -> dict[str, Any]:
    """The marks of one interaction, in seconds after its dispatch, from the fake's REST log."""
    t0 = record.dispatched_at
    token = record.token
    mine = [r for r in server.requests if token in r.path and r.done_at is not None]
    callback = next((r for r in mine if r.path.endswith("/callback")), None)
    edits = [r for r in mine if r.method == "PATCH" and r.path.endswith("/messages/@original")]
    results = [r for r in mine if r.method == "POST" and "/webhooks/" in r.path and r.files]
    job_id = None
    for edit in edits:
        found = JOB_ID.search(str((edit.payload or {}).get("content", "")))
        if found:
            job_id = found.group(1)
            break
    marks: dict[str, Any] = {"job_id": job_id}
    marks["deferred"] = callback.done_at - t0 if callback else None
    marks["queued_message"] = edits[0].done_at - t0 if edits else None
    result = results[0] if results else None
    progress = [e for e in edits[1:] if result is None or e.at < result.at]
    marks["first_progress_edit"] = progress[0].done_at - t0 if progress else None
    marks["result_posted"] = result.done_at - t0 if result else None
    marks["upload"] = result.done_at - result.at if result else None
    marks["result_bytes"] = sum(size for _, size in result.files) if result else None
    return marks


async def _one_job(
    server: Any,
    user: Any,
    prompt: str,
    count: int,
    steps: int | None,
    aspect: str | None = None,
) -> Any:
    options: dict[str, Any] = {"prompt": prompt, "count": count}
    if steps is not None:
        options["steps"] = steps
    if aspect is not None:
        options["aspect"] = aspect
    record = await server.slash(user, "imagine", options)
    token = record.token

    def posted() -> bool:
        return any(
            token in r.path and r.method == "POST" and r.files and r.done_at is not None
            for r in server.requests
        )

    await server.wait_until(posted, within_s=600, what=f"the result of {prompt!r}")
    return record


async def run_scenario(
    server: Any, users: list[Any], scenario: Scenario, steps: int | None, tag: str
) -> list[Any]:
    if scenario.concurrent:
        return list(
            await asyncio.gather(
                *(
                    _one_job(
                        server,
                        users[i % scenario.users],
                        f"{tag} {scenario.name} {i}: a fox in the snow",
                        scenario.shape(i)[1],
                        steps,
                        scenario.shape(i)[0],
                    )
                    for i in range(scenario.jobs)
                )
            )
        )
    records = []
    for i in range(scenario.jobs):
        prompt = f"{tag} {scenario.name} {i}: a lighthouse at dusk"
        records.append(await _one_job(server, users[0], prompt, scenario.count, steps))
        await asyncio.sleep(0.5)  # an idle bot for the next one (encode threads done, edits)
    return records


def image_op_presses(parents: list[_T], jobs: int) -> list[tuple[_T, str]]:
    """`jobs` presses: (parent, operation) pairs that go through every operation in turn, each
    on the next parent, and then the same pairs again (a second press of a shape is served
    by what the first one compiled, if anything)."""
    pairs = [
        (parents[i % len(parents)], IMAGE_OPS[i % len(IMAGE_OPS)])
        for i in range(max(1, (jobs + 1) // 2))
    ]
    return [*pairs, *pairs][:jobs]


async def run_image_ops(
    server: Any, user: Any, parents: list[tuple[str, str | None]], jobs: int
) -> list[dict[str, Any]]:
    """Press image-action buttons on posted results, one job at a time (`image_op_presses`).
    Per job: click -> result posted (seconds, this process's clock), the operation, the
    parent's aspect and the child's job id."""
    out: list[dict[str, Any]] = []
    for (job_id, aspect), op in image_op_presses(parents, jobs):
        original = _result_message(server, job_id)
        seen = {m.id for m in server.messages()}
        started = time.monotonic()
        await server.click(user, original, f"flux:img:{op}:{job_id}:0")
        child = await server.wait_for_message(
            lambda m, seen=seen, parent=original.id: (
                bool(m.attachments and m.embeds)
                and m.id not in seen
                and int((m.message_reference or {}).get("message_id", 0)) == parent
            ),
            within_s=600,
        )
        out.append(
            {
                "op": op,
                "aspect": aspect,
                "count": 1,
                "job_id": _button_job(child),
                "result_posted": time.monotonic() - started,
            }
        )
        await asyncio.sleep(0.5)
    return out


def _result_message(server: Any, job_id: str) -> Any:
    """The posted result of `job_id`: the message whose buttons act on it."""
    for message in server.messages():
        if message.attachments and any(_button_job_id(c) == job_id for c in message.custom_ids()):
            return message
    raise LookupError(f"no result message for job {job_id}")


def _button_job_id(custom_id: str) -> str | None:
    found = BUTTON_JOB.match(custom_id)
    return found.group(1) if found else None


def _button_job(message: Any) -> str | None:
    return next((job for c in message.custom_ids() if (job := _button_job_id(c)) is not None), None)


async def run_profile(
    *,
    model: str,
    profile: str,
    gpus: str,
    work_dir: Path,
    log: Log,
    plan: list[Scenario],
    steps: int | None = None,
    ready_within_s: float = 900.0,
    compiled_within_s: float = 900.0,
    image_ops: int = 0,
) -> dict[str, Any]:
    """One bot process with one speed profile through every scenario, then `image_ops`
    image actions pressed on the results (an "images" scenario)."""
    from tests.bot_process import start_fluxbot, stop_fluxbot
    from tests.fake_discord.server import FakeDiscord

    data_dir = work_dir / f"e2e-{profile}"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "logs" / "fluxbot.log"
    with contextlib.suppress(FileNotFoundError):
        log_path.unlink()
    server = FakeDiscord()
    await server.start()
    users = [server.alice, server.bob] + [server.add_user(f"user{i}") for i in range(3)]
    started = time.monotonic()
    env = _bot_env(server, model, profile, gpus, data_dir)
    env["TORCH_LOGS"] = "recompiles"
    output = data_dir / "output.txt"
    output.write_text("")
    process = await start_fluxbot(env, data_dir, output=output)
    result: dict[str, Any] = {"profile": profile, "scenarios": {}}
    try:
        await server.wait_ready(within_s=ready_within_s)
        await server.wait_for_commands("imagine", within_s=120)
        result["connected_s"] = time.monotonic() - started
        text = await _wait_log(
            log_path, lambda t: "loaded " in t, ready_within_s, f"{profile}: the model to load"
        )
        result["loaded_s"] = time.monotonic() - started
        # Served from here on (eagerly while compiling); the figures below are the steady state.
        try:
            await _wait_log(
                log_path, _compiled_or_eager, compiled_within_s, f"{profile}: the compile"
            )
            result["compiled_s"] = time.monotonic() - started
        except TimeoutError:
            # Measured anyway: jobs of the shapes ready run compiled, the others eagerly.
            result["compiled_s"] = None
            result["note"] = f"the background compile was not done {compiled_within_s:g} s in"
        text = _read(log_path)
        result["speed_log"] = [line for line in text.splitlines() if "speed" in line][-12:]
        result["shapes_compiled_s"] = [float(m) for m in SHAPE_COMPILED.findall(text)]
        log(
            f"{profile}: loaded {result['loaded_s']:.0f} s, compiled "
            f"{result['compiled_s'] or float('nan'):.0f} s, "
            f"{len(result['shapes_compiled_s'])} shapes"
        )
        await _one_job(server, users[0], f"{profile} first: a warm-up fox", 1, steps)
        for scenario in plan:
            recompiles_before = _read(output).count(RECOMPILE)
            records = await run_scenario(server, users, scenario, steps, profile)
            await asyncio.sleep(1.0)  # the last job's log line and status delete
            jobs = [_job_marks(server, r) for r in records]
            for i, job in enumerate(jobs):
                job["aspect"], job["count"] = scenario.shape(i)
            _add_stages(jobs, log_path.read_text(errors="replace"))
            result["scenarios"][scenario.name] = {
                "scenario": vars(scenario),
                "summary": summarise(jobs),
                "jobs": jobs,
                "recompiles": _read(output).count(RECOMPILE) - recompiles_before,
                "slowest_vs_shape_median": slowest_vs_shape_median(jobs),
            }
            posted = result["scenarios"][scenario.name]["summary"]["result_posted"]
            log(f"{profile} {scenario.name}: result posted p50 {posted['p50']} p95 {posted['p95']}")
        if image_ops:
            parents = _image_parents(result["scenarios"])
            recompiles_before = _read(output).count(RECOMPILE)
            jobs = await run_image_ops(server, users[0], parents, image_ops)
            await asyncio.sleep(1.0)
            _add_stages(jobs, log_path.read_text(errors="replace"))
            for job in jobs:
                job["aspect"] = f"{job['aspect']} {job['op']}"  # its shape: the parent's, the op
            result["scenarios"]["images"] = {
                "scenario": {"name": "images", "jobs": len(jobs), "ops": IMAGE_OPS},
                "summary": summarise(jobs),
                "jobs": jobs,
                "recompiles": _read(output).count(RECOMPILE) - recompiles_before,
                "slowest_vs_shape_median": slowest_vs_shape_median(jobs),
            }
            by_op = {
                op: percentile([j["result_posted"] for j in jobs if j["op"] == op], 50)
                for op in IMAGE_OPS
            }
            result["scenarios"]["images"]["result_posted_p50_by_op"] = by_op
            log(f"{profile} images: result posted p50 by operation {by_op}")
    finally:
        await stop_fluxbot(process)
        await server.stop()
    result["exit_code"] = process.returncode
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    result["tracebacks_in_log"] = text.count("Traceback")
    result["jobs_served_compiled"] = text.count("path compiled")
    return result


def _image_parents(scenarios: dict[str, Any]) -> list[tuple[str, str | None]]:
    """One-image results to act on: the mixed scenario's (every preset), else the singles'."""
    for name in ("mixed", "single"):
        jobs = scenarios.get(name, {}).get("jobs", [])
        found = [(j["job_id"], j.get("aspect")) for j in jobs if j.get("count") == 1]
        unique = list(dict.fromkeys(found))
        if unique:
            return unique
    raise LookupError("no one-image result to press image actions on")


def slowest_vs_shape_median(jobs: list[dict[str, Any]]) -> float | None:
    """The largest ratio of a job's GPU time (text + denoise + decode) to the median of the jobs
    of its shape (aspect, count); None when no job has its stages."""
    by_shape: dict[tuple[Any, Any], list[float]] = {}
    for job in jobs:
        if job.get("denoise") is None:
            continue
        gpu = job["text"] + job["denoise"] + job["decode"]
        by_shape.setdefault((job.get("aspect"), job.get("count")), []).append(gpu)
    ratios = [
        max(times) / statistics.median(times)
        for times in by_shape.values()
        if statistics.median(times) > 0
    ]
    return max(ratios) if ratios else None


def _add_stages(jobs: list[dict[str, Any]], log_text: str) -> None:
    stages = {m.group("job"): m for m in JOB_LINE.finditer(log_text)}
    for job in jobs:
        line = stages.get(job.get("job_id") or "")
        for stage in ("queue", "text", "denoise", "decode", "png_encode"):
            job[stage] = float(line.group(stage)) if line else None


def render(results: dict[str, Any]) -> str:
    lines = [
        f"# fluxbot time to image in Discord: {results['environment']['card']}",
        "",
        "Seconds after the interaction (p50 / p95), from the fake Discord's clock; stages from "
        "the bot's per-job log line (queue .. PNG encode) and the result request (upload).",
        "",
        "| profile | scenario | jobs | deferred | queued msg | first progress | result posted "
        "| queue | text | denoise | decode | PNG | upload |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(entry: dict[str, Any]) -> str:
        if entry["p50"] is None:
            return "–"
        return f"{entry['p50']:.3f} / {entry['p95']:.3f}"

    for profile, entry in results["profiles"].items():
        if "error" in entry:
            lines.append(f"| {profile} | error: {entry['error']} |")
            continue
        for name, scenario in entry["scenarios"].items():
            s = scenario["summary"]
            row = [profile, name, str(s["jobs"])]
            row += [cell(s[k]) for k in (*MARKS, *STAGES)]
            lines.append("| " + " | ".join(row) + " |")
    for profile, entry in results["profiles"].items():
        for name, scenario in entry.get("scenarios", {}).items():
            ratio = scenario.get("slowest_vs_shape_median")
            lines.append(
                f"\n{profile} {name}: {scenario.get('recompiles')} recompiles; slowest job "
                + (f"{ratio:.2f}x its shape's median GPU time" if ratio else "–")
            )
    return "\n".join(lines) + "\n"


def run_e2e(
    *,
    model: str,
    profiles: list[str],
    gpus: str,
    work_dir: Path,
    out: Path,
    log: Log,
    plan: list[Scenario],
    steps: int | None = None,
    device: str = "cuda",
    budget_s: float = 1e9,
    compiled_within_s: float = 900.0,
    image_ops: int = 0,
) -> dict[str, Any]:
    from bench.report import environment

    begun = time.monotonic()
    results: dict[str, Any] = {"environment": environment(device), "profiles": {}}
    out.mkdir(parents=True, exist_ok=True)
    for profile in profiles:
        if time.monotonic() - begun > budget_s:
            log(f"{profile}: skipped (time budget)")
            results["profiles"][profile] = {"error": "skipped: time budget"}
            continue
        try:
            results["profiles"][profile] = asyncio.run(
                run_profile(
                    model=model,
                    profile=profile,
                    gpus=gpus,
                    work_dir=work_dir,
                    log=log,
                    plan=plan,
                    steps=steps,
                    compiled_within_s=compiled_within_s,
                    image_ops=image_ops,
                )
            )
        except Exception as exc:  # keep the other profiles' figures
            log(f"{profile} failed: {exc!r}")
            results["profiles"][profile] = {"error": f"{type(exc).__name__}: {exc}"}
        (out / "e2e.json").write_text(json.dumps(results, indent=1, default=str))
        (out / "e2e.md").write_text(render(results))
    return results
