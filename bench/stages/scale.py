"""Scale stage: stream throughput with one and with two workers on the same partitioned topics.

Both runs are measured here, one after the other, on fresh topics of the same size;
the figure is the two-worker rate and the ratio to one worker is the scaling factor.
On a 2-core machine the broker, the sampler and both workers share the cores, so the
factor says how much of a second worker's core the pipeline can use, not how it
scales on a cluster.
"""

from __future__ import annotations

from bench.measure import Figure, StageResult, at_least
from bench.plan import Plan
from bench.stack import BenchStack
from bench.stages.stream import run_workers


def run(stack: BenchStack, plan: Plan) -> StageResult:
    one, _ = run_workers(stack, plan, 1, baseline=False)
    two, _ = run_workers(stack, plan, 2, baseline=False)
    figure = Figure.median_of("two workers", two.windows.rates, "postbacks/s")
    baseline = Figure.median_of("one worker", one.windows.rates, "postbacks/s")
    result = StageResult("scale", figure, [baseline])
    result.extra.append(Figure("workers' CPU", two.cores, "cores"))
    per_cpu = [run.windows.median / run.cores if run.cores else float("nan") for run in (one, two)]
    efficiency = per_cpu[1] / per_cpu[0]
    result.extra += [
        Figure("postbacks per worker-CPU-second, one worker", per_cpu[0], "postbacks"),
        Figure("two workers", per_cpu[1], "postbacks"),
    ]
    result.targets.append(at_least("two workers' postbacks per CPU-second / one's", efficiency, 0.85))
    result.notes += [f"one worker: {one.windows.describe()}", f"two workers: {two.windows.describe()}"]
    return result
