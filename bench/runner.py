"""`postbacks bench [stage...]`: start the local stack, run the stages, print figures, baselines, ratios.

Each stage measures its figure and its physical baseline in the same run, on the same
machine, one after the other (never at once: they would share the cores), so the
ratios hold on a noisy shared machine even when the absolute figures move.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from bench.measure import StageResult
from bench.plan import Plan
from bench.stack import BenchStack

Stage = Callable[[BenchStack, Plan], list[StageResult]]


def _ingest(stack: BenchStack, plan: Plan) -> list[StageResult]:
    from bench.stages import ingest

    return [ingest.run(stack, plan)]


def _stream(stack: BenchStack, plan: Plan) -> list[StageResult]:
    from bench.stages import stream

    return [stream.run(stack, plan)]


def _sink(stack: BenchStack, plan: Plan) -> list[StageResult]:
    from bench.stages import sink

    return [sink.run(stack, plan)]


def _e2e(stack: BenchStack, plan: Plan) -> list[StageResult]:
    from bench.stages import e2e

    return [e2e.run(stack, plan)]


def _scale(stack: BenchStack, plan: Plan) -> list[StageResult]:
    from bench.stages import scale

    return [scale.run(stack, plan)]


STAGES: dict[str, Stage] = {"ingest": _ingest, "stream": _stream, "sink": _sink, "e2e": _e2e, "scale": _scale}


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def render(results: list[StageResult]) -> str:
    """The table docs/benchmarks.md carries: figure, baselines, ratios, targets met or not."""
    lines = ["| stage | figure | baseline (same run) | ratio | target |", "|---|---|---|---|---|"]
    for r in results:
        figure = f"{r.figure.name}: {_number(r.figure.value)} {r.figure.unit}"
        extra = "".join(f"; {e.name} {_number(e.value)} {e.unit}" for e in r.extra)
        baselines = "<br>".join(f"{b.name}: {_number(b.value)} {b.unit}" for b in r.baselines) or "—"
        ratios = "<br>".join(f"{r.ratio(b):.2f}" for b in r.baselines) or "—"
        targets = "<br>".join(
            f"{t.text} {'✓' if t.met else '✗' if t.met is not None else '?'}" for t in r.targets
        )
        lines.append(f"| {r.stage} | {figure}{extra} | {baselines} | {ratios} | {targets or '—'} |")
    notes = [f"- {r.stage}: {note}" for r in results for note in r.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="postbacks bench", description=__doc__.split("\n")[0])
    parser.add_argument("stages", nargs="*", help=f"any of {', '.join(STAGES)} (default: all, in this order)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, 1 s windows: proves it runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of each service here")
    parser.add_argument("--workdir", type=Path, help="keep the stack's data and logs here")
    parser.add_argument("--e2e-rate", type=float, help="postbacks/s the end-to-end stage offers")
    parser.add_argument("--ingest-workers", type=int, default=1, help="ingest processes in the ingest stage")
    parser.add_argument("--plot", type=Path, help="write the end-to-end latency distribution here (PNG)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    plan = replace(
        Plan.smoke() if args.quick else Plan(),
        profile_dir=args.profile,
        plot=args.plot,
        ingest_workers=args.ingest_workers,
    )
    if args.e2e_rate:
        plan = replace(plan, e2e_rate=args.e2e_rate)
    names = args.stages or list(STAGES)
    results: list[StageResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="postbacks-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with BenchStack(workdir) as stack:
            for name in names:
                print(f"-- {name}", flush=True)
                stage_started = time.monotonic()
                for result in STAGES[name](stack, plan):
                    results.append(result)
                    print(render([result]).splitlines()[2], flush=True)
                print(f"   ({time.monotonic() - stage_started:.0f} s)", flush=True)
    print()
    print(render(results))
    print(f"\n{len(names)} stages in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "plan": {k: str(v) for k, v in asdict(plan).items()},
                    "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0))},
                    "stages": [r.to_json() for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
