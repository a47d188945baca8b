"""`python -m bench`: stock diffusers vs fluxbot's worker path, one card, one run.

    python -m bench run --profiles stock,eager,compile,fast         # the speed comparison
    python -m bench run --profiles stock --restart compile --memory full,fp8,offload,lowvram

Everything runs against a FLUX.1-schnell-shaped model with random weights, built on the device
and saved once with `save_pretrained` (`--model-dir`), then loaded back through fluxbot's own
loading code. Results go to `--out` as `<date>-<card>[-tag].json` and `.md`, rewritten after
each phase so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PROFILES = ("stock", "no-levers", "eager", "compile", "fast")
MEMORY_PROFILES = ("full", "fp8", "offload", "lowvram")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--arch", choices=("full", "tiny"), default="full")
        p.add_argument("--device", default="cuda")
        p.add_argument("--work-dir", type=Path, default=Path("/tmp/fluxbench"))
        p.add_argument("--model-dir", type=Path, default=None, help="default: WORK/model-ARCH")
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--queue-jobs", type=int, default=20)
        p.add_argument("--attention", default="auto", help="auto | cudnn | flash | default")
        p.add_argument("--compile-mode", default="default")
        p.add_argument("--static", action="store_true", help="compile with static shapes")
        p.add_argument("--first-size", type=int, default=1024, help="side of the first image")
        p.add_argument("--no-warm-presets", action="store_true", help="warm only the first size")

    run = sub.add_parser("run", help="run benchmark phases and write results")
    common(run)
    run.add_argument("--profiles", type=_csv, default=["stock", "eager", "compile", "fast"])
    run.add_argument("--cases", type=_csv, default=["1024x1", "1024x4", "512x4"])
    run.add_argument("--no-queue", action="store_true")
    run.add_argument("--micro", action="store_true", help="SDPA backends and fp8 linears alone")
    run.add_argument("--restart", type=_csv, default=[], help="profiles to restart (cold, warm)")
    run.add_argument("--memory", type=_csv, default=[], help="memory profiles to measure")
    run.add_argument("--lowvram-cap-gib", type=float, default=4.0)
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument("--tag", default="")

    scale = sub.add_parser("scale", help="queue throughput on one device, then on several")
    scale.add_argument("--arch", choices=("full", "tiny"), default="full")
    scale.add_argument("--devices", type=_csv, default=["cuda:0", "cuda:1"])
    scale.add_argument("--work-dir", type=Path, default=Path("/tmp/fluxbench"))
    scale.add_argument("--model-dir", type=Path, default=None, help="default: WORK/model-ARCH")
    scale.add_argument("--jobs", type=int, default=40)
    scale.add_argument("--size", type=int, default=1024)
    scale.add_argument("--out", type=Path, default=DEFAULT_OUT)
    scale.add_argument("--tag", default="scale")
    scale.add_argument(
        "--split-cap-gib", type=float, default=0.0, help="also check split placement (0: skip)"
    )

    probe = sub.add_parser("probe", help="where the time goes: stage and lever probes")
    probe.add_argument("--device", default="cuda")
    probe.add_argument("--out", type=Path, default=DEFAULT_OUT)
    probe.add_argument("--budget-s", type=float, default=300.0, help="for transformer variants")
    probe.add_argument("--only", type=_csv, default=[], help="fp8_matmuls,text,vae,...")
    kernels = sub.add_parser("kernels", help="kernel-time breakdown of compile/fast, levers")
    kernels.add_argument("--out", type=Path, default=DEFAULT_OUT)
    kernels.add_argument("--only", type=_csv, default=[], help="stock,compile,fast,...")
    kernels.add_argument("--budget-s", type=float, default=1e9, help="no new phase after this")
    png = sub.add_parser("png", help="PNG/WebP encoders on this CPU, 1024x1024")
    png.add_argument("--out", type=Path, default=DEFAULT_OUT)
    safety = sub.add_parser("safety", help="the image-safety check's cost per result, this CPU")
    safety.add_argument("--out", type=Path, default=DEFAULT_OUT)
    safety.add_argument("--repeats", type=int, default=30)
    e2e = sub.add_parser("e2e", help="time to image in Discord: fluxbot run vs the fake Discord")
    e2e.add_argument("--arch", choices=("full", "tiny"), default="full")
    e2e.add_argument("--device", default="cuda")
    e2e.add_argument("--gpus", default="0", help="FLUXBOT_GPUS for the bot")
    e2e.add_argument("--profiles", type=_csv, default=["fast", "compile", "eager"])
    e2e.add_argument("--work-dir", type=Path, default=Path("/tmp/fluxbench"))
    e2e.add_argument("--model-dir", type=Path, default=None, help="default: WORK/model-ARCH")
    e2e.add_argument("--steps", type=int, default=None, help="default: the bot's (4)")
    e2e.add_argument("--single", type=int, default=5)
    e2e.add_argument("--count4", type=int, default=3)
    e2e.add_argument("--burst", type=int, default=20)
    e2e.add_argument("--burst-users", type=int, default=5)
    e2e.add_argument("--mixed", type=int, default=40, help="jobs over every preset, counts 1-4")
    e2e.add_argument(
        "--image-ops", type=int, default=18, help="image actions pressed on results (each op twice)"
    )
    e2e.add_argument("--out", type=Path, default=DEFAULT_OUT)
    e2e.add_argument("--budget-s", type=float, default=1e9, help="no new profile after this")
    e2e.add_argument(
        "--compiled-within-s", type=float, default=900.0, help="then measure while it compiles"
    )
    acks = sub.add_parser("acks", help="acks under a burst of /imagine: fluxbot run vs fake")
    acks.add_argument("--model", default="tiny-random", help="FLUXBOT_MODEL for the bot")
    acks.add_argument("--gpus", default="cpu", help="FLUXBOT_GPUS for the bot")
    acks.add_argument("--commands", type=int, default=200)
    acks.add_argument("--users", type=int, default=50)
    acks.add_argument("--spread-s", type=float, default=2.0, help="send them over this long")
    acks.add_argument("--work-dir", type=Path, default=Path("/tmp/fluxbench"))
    acks.add_argument("--out", type=Path, default=None, help="a JSON file for the figures")
    gaps = sub.add_parser("gaps", help="where the idle time between two jobs goes")
    gaps.add_argument("--arch", choices=("full", "tiny"), default="full")
    gaps.add_argument("--device", default="cuda")
    gaps.add_argument("--work-dir", type=Path, default=Path("/tmp/fluxbench"))
    gaps.add_argument("--jobs", type=int, default=16)
    gaps.add_argument("--out", type=Path, default=DEFAULT_OUT)
    images = sub.add_parser("images", help="vary/remix/upscale/zoom/pan: stock vs fluxbot")
    images.add_argument("--device", default="cuda")
    images.add_argument("--repeats", type=int, default=2)
    images.add_argument("--profiles", type=_csv, default=["eager", "fast"])
    images.add_argument("--deadline-s", type=float, default=240.0, help="skip what starts later")
    images.add_argument("--out", type=Path, default=DEFAULT_OUT)
    images.add_argument("--arch", choices=("full", "tiny"), default="full")
    images.add_argument("--side", type=int, default=1024, help="side of the source image")
    images.add_argument("--profile", action="store_true", help="kernel breakdown of each op")
    child = sub.add_parser("child", help=argparse.SUPPRESS)
    common(child)
    child.add_argument("--task", choices=("restart", "memory"), required=True)
    child.add_argument("--profile", required=True)
    child.add_argument("--cap-gib", type=float, default=None)
    child.add_argument("--t0", type=float, default=None)
    child.add_argument("--result", type=Path, required=True)
    return parser


def _write_cpu_result(path: Path, result: dict[str, Any]) -> int:
    """A CPU measurement's figures: logged a line each and written as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    for name, entry in result.items():
        _log(f"{name}: {entry}")
    return 0


def _context(args: argparse.Namespace) -> Any:
    from bench.runs import Context

    model_dir = args.model_dir or args.work_dir / f"model-{args.arch}"
    return Context(
        model_dir=model_dir,
        work_dir=args.work_dir,
        device=args.device,
        repeats=args.repeats,
        queue_jobs=args.queue_jobs,
        log=_log,
        attention=args.attention,
        compile_mode=args.compile_mode,
        dynamic=not args.static,
        first_size=args.first_size,
        warm_presets=not args.no_warm_presets,
    )


def _child_argv(args: argparse.Namespace, task: str, profile: str, result: Path) -> list[str]:
    argv = [sys.executable, "-m", "bench", "child", "--task", task, "--profile", profile]
    argv += ["--arch", args.arch, "--device", args.device, "--work-dir", str(args.work_dir)]
    argv += ["--repeats", str(args.repeats), "--result", str(result)]
    argv += ["--attention", args.attention, "--compile-mode", args.compile_mode]
    if args.model_dir:
        argv += ["--model-dir", str(args.model_dir)]
    if args.static:
        argv.append("--static")
    return argv


def _run_child(argv: list[str], result: Path) -> dict[str, Any]:
    result.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=Path(__file__).resolve().parent.parent, check=False)
    if proc.returncode != 0 or not result.is_file():
        return {"error": f"exit code {proc.returncode}", "wall_s": time.perf_counter() - started}
    return json.loads(result.read_text())


def command_run(args: argparse.Namespace) -> int:
    from bench import report
    from bench.model import ensure_saved
    from bench.runs import compare_references, free_memory, run_fluxbot, run_micro, run_stock

    unknown = [p for p in args.profiles if p not in PROFILES]
    unknown += [m for m in args.memory if m not in MEMORY_PROFILES]
    if unknown:
        print(f"unknown profile(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ctx = _context(args)
    json_path, md_path = report.result_paths(args.out, args.device, args.tag)
    results: dict[str, Any] = {
        "environment": report.environment(args.device),
        "arch": args.arch,
        "repeats": args.repeats,
        "profiles": {},
        "notes": [],
    }

    def save() -> None:
        report.write(results, json_path, md_path)
        _log(f"wrote {json_path}")

    _log(f"card: {results['environment']['card']}")
    results["model_build"] = ensure_saved(args.arch, ctx.model_dir, args.device, _log)
    with_queue = not args.no_queue
    if args.micro and args.device.startswith("cuda"):
        results["micro"] = run_micro(args.device, _log)
        save()
    for profile in args.profiles:
        _log(f"phase {profile}")
        try:
            if profile == "stock":
                results["stock"] = run_stock(ctx, args.cases, with_queue)
                free_memory(args.device)
            elif profile == "no-levers":
                results["profiles"][profile] = run_fluxbot(
                    ctx, "eager", args.cases[:1], False, warm_presets=False, levers=False
                )
            else:
                results["profiles"][profile] = run_fluxbot(ctx, profile, args.cases, with_queue)
        except Exception as exc:  # keep what the other phases measured
            logging.exception("phase %s failed", profile)
            results["profiles"].setdefault(profile, {})["error"] = f"{type(exc).__name__}: {exc}"
        results["output_diff"] = compare_references(ctx)
        save()
    if args.restart:
        results["restart"] = {}
        for profile in args.restart:
            cache = args.work_dir / "cache" / f"restart-{profile}"
            shutil.rmtree(cache, ignore_errors=True)
            for label in ("cold", "warm"):
                _log(f"restart {profile} ({label} compile cache)")
                out = args.work_dir / f"restart-{profile}-{label}.json"
                argv = [*_child_argv(args, "restart", profile, out), "--t0", repr(time.time())]
                entry = _run_child(argv, out)
                entry["cache"] = label
                results["restart"][f"{profile} ({label})"] = entry
                save()
    if args.memory:
        results["memory"] = {}
        for profile in args.memory:
            _log(f"memory profile {profile}")
            out = args.work_dir / f"memory-{profile}.json"
            argv = _child_argv(args, "memory", profile, out)
            if profile == "lowvram" and args.lowvram_cap_gib:
                argv += ["--cap-gib", str(args.lowvram_cap_gib)]
            results["memory"][profile] = _run_child(argv, out)
            save()
    save()
    print(md_path.read_text())
    return 0


def command_child(args: argparse.Namespace) -> int:
    from bench.runs import run_memory_profile, run_restart

    ctx = _context(args)
    if args.task == "restart":
        result = run_restart(ctx, args.profile, args.t0 or time.time())
    else:
        result = run_memory_profile(ctx, args.profile, args.cap_gib)
    args.result.write_text(json.dumps(result, indent=2, default=str))
    _log(f"child {args.task} {args.profile}: done")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("FLUXBENCH_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.command == "images":
        from bench.images import run_images

        args.out.mkdir(parents=True, exist_ok=True)
        run_images(
            args.device,
            args.out,
            repeats=args.repeats,
            deadline_s=args.deadline_s,
            profiles=args.profiles,
            arch=args.arch,
            side=args.side,
            kernel_profiles=args.profile,
        )
        return 0
    if args.command == "run":
        return command_run(args)
    if args.command == "scale":
        return command_scale(args)
    if args.command == "gaps":
        from bench.gaps import run_gaps
        from bench.model import ensure_saved

        model_dir = args.work_dir / f"model-{args.arch}"
        ensure_saved(args.arch, model_dir, args.device, log=_log)
        result = run_gaps(model_dir, args.device, args.jobs, _log)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gaps.json").write_text(json.dumps(result, indent=1))
        return 0
    if args.command == "e2e":
        return command_e2e(args)
    if args.command == "acks":
        from bench.acks import render, run_acks

        result = run_acks(
            model=args.model,
            gpus=args.gpus,
            work_dir=args.work_dir,
            out=args.out,
            log=_log,
            commands=args.commands,
            users=args.users,
            spread_s=args.spread_s,
        )
        print(render(result))
        return 0 if result["tracebacks_in_log"] == 0 else 1
    if args.command == "kernels":
        from bench.kernels import run_kernels

        run_kernels(args.out, _log, args.only, args.budget_s)
        return 0
    if args.command == "png":
        from bench.png import run_png

        return _write_cpu_result(args.out / "png.json", run_png())
    if args.command == "safety":
        from bench.safety import run_safety

        return _write_cpu_result(args.out / "safety.json", run_safety(args.repeats))
    if args.command == "probe":
        from bench.probe import run_probe

        run_probe(args.out, args.device, args.budget_s, _log, args.only)
        return 0
    return command_child(args)


def command_e2e(args: argparse.Namespace) -> int:
    """Issue #17's time to image: the real bot, each speed profile, four scenarios."""
    from bench.e2e import render, run_e2e, scenarios

    if args.arch == "tiny":
        model = "tiny-random"
    else:
        from bench.model import ensure_saved

        model_dir = args.model_dir or args.work_dir / f"model-{args.arch}"
        ensure_saved(args.arch, model_dir, args.device, log=_log)
        model = str(model_dir)
    results = run_e2e(
        model=model,
        profiles=args.profiles,
        gpus=args.gpus,
        work_dir=args.work_dir,
        out=args.out,
        log=_log,
        plan=scenarios(args.single, args.count4, args.burst, args.burst_users, args.mixed),
        steps=args.steps,
        device=args.device,
        budget_s=args.budget_s,
        compiled_within_s=args.compiled_within_s,
        image_ops=args.image_ops,
    )
    print(render(results))
    failed = [p for p, entry in results["profiles"].items() if "error" in entry]
    return 1 if failed else 0


def command_scale(args: argparse.Namespace) -> int:
    """Issue #7's multi-GPU measurement: one device, then all, same queue."""
    from bench.model import ensure_saved
    from bench.report import card_name, result_paths
    from bench.scale import render_scale, render_split, run_scale, run_split

    model_dir = args.model_dir or args.work_dir / f"model-{args.arch}"
    ensure_saved(args.arch, model_dir, args.devices[0], log=_log)
    card = card_name(args.devices[0])
    if args.jobs == 0:  # the split placement check alone
        split = run_split(model_dir, args.devices, args.split_cap_gib, args.size)
        json_path, md_path = result_paths(args.out, args.devices[0], args.tag)
        json_path.write_text(json.dumps({"split": split}, indent=2, default=str))
        md_path.write_text(
            "\n".join([f"# fluxbot: {len(args.devices)} x {card}", "", *render_split(split)])
        )
        _log(f"split placement: {split}")
        return 0
    result = run_scale(model_dir, args.devices, args.jobs, args.size)
    json_path, md_path = result_paths(args.out, args.devices[0], args.tag)
    json_path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        json_path.write_text(json.dumps(result, indent=2, default=str))
        md_path.write_text(render_scale(result, f"{len(args.devices)} x {card}"))

    save()
    _log(f"speed-up {result['speedup']:.2f}x; wrote {json_path}")
    if args.split_cap_gib and len(args.devices) > 1:
        result["split"] = run_split(model_dir, args.devices, args.split_cap_gib, args.size)
        save()
        _log(f"split placement: {result['split']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
