"""One-command GPU check: ``python3 -m vdm gpu-check --out DIR [--budget-s 280]``.

Built for machines lent for minutes with only PyTorch and numpy installed (no Snakemake, PyYAML,
torch-fidelity, tqdm or internet): everything here imports nothing else, and the configs are read
from the resolved copies in ``vdm/bench/resolved_configs.json`` when PyYAML/Snakemake are missing.
Three stages (``bench``, ``train``, ``sample_nll``: :mod:`vdm.bench.gpu_stages` says what each
runs and measures), each in its own subprocess with its own time limit (a share of
``--budget-s``; time a stage leaves unused goes to the next ones), each writing its result as
soon as it has one, so a stage that hangs or crashes loses nothing of the others. This module is
the parent: it runs the stages (:func:`run_stage`), evaluates the checks
(:func:`evaluate_checks`), writes the summary, and reads the command line.

Output (a few small files): ``DIR/gpu_check.json`` (rewritten after every stage: device, torch
and CUDA versions, each stage's status, seconds, limit and result, the checks and the goals),
``DIR/summary.txt`` (the same in a few lines), ``DIR/stages/<stage>.json`` and
``DIR/stages/<stage>.log`` (the stage's output, its last 64 KB). Training runs go to a temporary
directory that is removed at the end. Exit status 0 when every stage finished and every check
passed. ``--device cpu --tiny`` runs the same code with tiny sizes (the tests do).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vdm.bench.gpu_stages import SCHEDULES, STAGES, CheckOptions, run_stage_in_process
from vdm.core.provenance import provenance, resolve_device, write_json_atomic
from vdm.model.objectives import OBJECTIVES

#: each stage's share of the time budget (of what is left when it starts)
SHARES = {"bench": 0.55, "train": 0.33, "sample_nll": 0.12}
LOG_TAIL_BYTES = 64 * 1024


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """Keep only the last ``limit`` bytes of ``path``; return its last 20 lines."""
    if not path.is_file():
        return ""
    raw = path.read_bytes()
    if len(raw) > limit:
        raw = raw[-limit:]
        path.write_bytes(raw)
    return "\n".join(raw.decode(errors="replace").strip().splitlines()[-20:])


def run_stage(stage: str, options: CheckOptions, limit: float, work: Path) -> dict[str, Any]:
    """Run ``stage`` in a subprocess for at most ``limit`` seconds (then its process group is
    killed); the stage's own deadline is 10% (at most 15 s) earlier, so it can stop between
    cells and write what it has."""
    stages_dir = Path(options.out) / "stages"
    stages_dir.mkdir(parents=True, exist_ok=True)
    out, log = stages_dir / f"{stage}.json", stages_dir / f"{stage}.log"
    out.unlink(missing_ok=True)
    started = time.time()
    deadline = started + limit - min(15.0, 0.1 * limit)
    command = [sys.executable, "-m", "vdm.bench.gpu_check", "--stage", stage, "--options",
               json.dumps(dataclasses.asdict(options)), "--stage-out", str(out), "--work",
               str(work), "--deadline", repr(deadline)]
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                         if p)}
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            code: int | None = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the stage and its compile workers
            process.wait()
            code = None
    seconds = time.time() - started
    written = json.loads(out.read_text()) if out.is_file() else {}
    status = ("ok" if code == 0 and written.get("complete") else
              f"timed out after {limit:.0f} s" if code is None else f"failed (exit {code})")
    entry = {"status": status, "seconds": round(seconds, 1), "limit_s": round(limit, 1),
             "result": written.get("result", {})}
    if written.get("error"):
        entry["error"] = written["error"]
    if status != "ok":
        entry["log_tail"] = _tail(log)
    else:
        _tail(log)
    return entry


def evaluate_checks(stages: dict[str, dict[str, Any]], requested: tuple[str, ...],
                    device_type: str) -> dict[str, bool | None]:
    """The pass/fail checks (None: not applicable or not run): every stage finished; every
    training loss finite and every cell ran; eager and compiled losses agree; no host sync
    between log rows (CUDA only); sampling and NLL finite."""
    checks: dict[str, bool | None] = {
        "stages_completed": all(stages.get(s, {}).get("status") == "ok" for s in requested)}
    train = stages.get("train", {}).get("result", {})
    if "train" in requested:
        cells = train.get("cells", [])
        checks["train_losses_finite"] = bool(cells) and not train.get("skipped") and all(
            c.get("finite") for c in cells)
        agreements = [c["agreement"]["ok"] for c in cells if "agreement" in c]
        checks["eager_compiled_agree"] = (all(agreements) and len(agreements) == len(cells)
                                          if train.get("compile") else None)
        no_sync = train.get("no_sync", {})
        checks["no_host_sync_between_logs"] = (
            bool(no_sync) and all(v["ok"] for v in no_sync.values())
            if device_type == "cuda" else None)
    if "sample_nll" in requested:
        checks["sample_nll_finite"] = bool(stages.get("sample_nll", {}).get("result", {}).get(
            "finite"))
    return checks


def _fmt(value: Any, spec: str = ".3g") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The few lines of ``summary.txt``."""
    lines = [f"vdm gpu-check on {result['device_name']} ({result['device']}), torch "
             f"{result['torch_version']}, CUDA {result['cuda_version']}; budget "
             f"{result['budget_s']:.0f} s, used {result.get('seconds', 0):.0f} s"]
    for stage, entry in result["stages"].items():
        res = entry.get("result", {})
        head = f"{stage}: {entry['status']} in {entry['seconds']:.0f} s (limit {entry['limit_s']:.0f} s)"
        if stage == "bench":
            m, g = res.get("metrics", {}), res.get("goals", {})
            goal = {k: ("yes" if v["met"] else "NO") for k, v in g.items()}
            peak = res.get("mfu", {}).get("peak_dtype", "")
            head += (f"; variant {res.get('train', {}).get('variant', 'n/a')}: "
                     f"{_fmt(m.get('train_images_per_s'))} images/s, MFU {_fmt(m.get('mfu'))} "
                     f"(goal >= 0.35: {goal.get('mfu', 'n/a')}), trainer/bare "
                     f"{_fmt(m.get('train_loop_efficiency'))} (goal: "
                     f"{goal.get('train_loop_efficiency', 'n/a')}), compile (s) "
                     f"{_fmt(m.get('compile_seconds'))}; fp32 "
                     f"{_fmt(m.get('train_images_per_s_fp32'))}, bf16 "
                     f"{_fmt(m.get('train_images_per_s_bf16'))} images/s; peak {peak} "
                     f"{_fmt(m.get('peak_flops'))} FLOP/s; {_fmt(m.get('flops_per_image'))} "
                     f"FLOP/image; sampling {_fmt(m.get('sample_images_per_s'))} (bf16 "
                     f"{_fmt(m.get('sample_bf16_images_per_s'))}) images/s; NLL "
                     f"{_fmt(m.get('nll_seconds_per_1000'))} s/1000")
        elif stage == "train":
            cells = res.get("cells", [])
            rel = [c["agreement"]["max_rel_diff"] for c in cells if "agreement" in c]
            head += (f"; {sum(bool(c.get('finite')) for c in cells)}/{len(cells)} cells finite"
                     f" ({len(res.get('skipped', []))} skipped); eager vs compiled max rel diff "
                     f"{_fmt(max(rel) if rel else None)}; no-sync "
                     f"{ {k: v['ok'] for k, v in res.get('no_sync', {}).items()} or 'n/a'}")
        elif stage == "sample_nll":
            head += (f"; sampling fp32 {_fmt(res.get('sample_fp32_images_per_s'))}, bf16 "
                     f"{_fmt(res.get('sample_bf16_images_per_s'))} images/s; NLL "
                     f"{_fmt(res.get('nll_seconds_per_1000'))} s/1000 images, finite "
                     f"{res.get('finite')}")
        lines.append(head)
        if entry.get("error"):
            lines.append(f"  error: {entry['error'].splitlines()[-1]}")
    failed = [name for name, ok in result["checks"].items() if ok is False]
    lines.append("checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed))
                 + "; " + ", ".join(f"{k}={v}" for k, v in result["checks"].items()))
    return lines


def run_check(options: CheckOptions) -> dict[str, Any]:
    """All requested stages within ``options.budget_s``; writes and returns the result."""
    started = time.time()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(options.device)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "-m", "vdm", *sys.argv[1:]]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "budget_s": options.budget_s, "options": dataclasses.asdict(options), "stages": {},
        "checks": {}, "provenance": provenance(device)}
    work = Path(tempfile.mkdtemp(prefix="vdm-gpu-check-"))
    try:
        for index, stage in enumerate(options.stages):
            remaining = options.budget_s - (time.time() - started)
            share = SHARES[stage] / sum(SHARES[s] for s in options.stages[index:])
            result["stages"][stage] = run_stage(stage, options, max(remaining * share, 1.0), work)
            result["checks"] = evaluate_checks(result["stages"], options.stages, device.type)
            result["seconds"] = round(time.time() - started, 1)
            write_json_atomic(out / "gpu_check.json", result)
            (out / "summary.txt").write_text("\n".join(summary_lines(result)) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (small files)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--budget-s", type=float, default=280.0,
                        help="total seconds for all stages (default 280)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"subset of {','.join(STAGES)}")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="training stage")
    parser.add_argument("--schedules", default=",".join(SCHEDULES), help="training stage")
    parser.add_argument("--no-compile", action="store_true", help="eager only (no torch.compile)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny networks, batches and step counts (tests, smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--train-steps", type=int, default=200, help="steps per training cell")
    parser.add_argument("--agree-rtol", type=float, default=0.05,
                        help="largest relative loss difference eager vs compiled (bf16)")


def options_from_args(args: argparse.Namespace) -> CheckOptions:
    def names(text: str, allowed, what: str) -> tuple[str, ...]:
        chosen = tuple(item for item in text.split(",") if item)
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not chosen:
            raise ValueError(f"--{what}: unknown or empty {unknown or text!r}; choose from "
                             f"{', '.join(allowed)}")
        return chosen

    return CheckOptions(out=str(args.out), device=args.device, budget_s=args.budget_s,
                        stages=names(args.stages, STAGES, "stages"),
                        objectives=names(args.objectives, tuple(OBJECTIVES), "objectives"),
                        schedules=names(args.schedules, SCHEDULES, "schedules"),
                        compile=not args.no_compile, tiny=args.tiny, threads=args.threads,
                        train_steps=args.train_steps, agree_rtol=args.agree_rtol)


def main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: run, print the summary; 0 when every check passed."""
    options = options_from_args(args)
    device = resolve_device(options.device)  # --device cuda without CUDA fails here, in one line
    if options.device == "auto" and device.type != "cuda" and not options.tiny:
        raise ValueError("no CUDA GPU found; the full-size check would take hours on a CPU (use "
                         "--device cpu --tiny for a smoke run of the same code)")
    result = run_check(options)
    print((Path(options.out) / "summary.txt").read_text(), end="")
    print(f"-> {Path(options.out) / 'gpu_check.json'}")
    return 0 if all(ok is not False for ok in result["checks"].values()) else 1


def _stage_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdm.bench.gpu_check",
                                     description="one stage of the GPU check (internal)")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--options", required=True, help="CheckOptions as JSON")
    parser.add_argument("--stage-out", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--deadline", required=True, type=float, help="time.time() to stop by")
    args = parser.parse_args(argv)
    raw = json.loads(args.options)
    options = CheckOptions(**{key: tuple(value) if isinstance(value, list) else value
                              for key, value in raw.items()})
    work = args.work / args.stage if args.stage != "sample_nll" else args.work / "train"
    work.mkdir(parents=True, exist_ok=True)
    return run_stage_in_process(args.stage, options, args.stage_out, work, args.deadline)


if __name__ == "__main__":
    sys.exit(_stage_main())
