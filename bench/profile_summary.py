"""Summarise py-spy's collapsed stacks: where the samples are, by function (self and total)."""

from __future__ import annotations

import sys
from collections import Counter


def main(path: str, top: int = 25) -> None:
    self_time: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(path, encoding="utf-8") as lines:
        collapsed = lines.read().splitlines()
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples\n-- self --")
    for frame, n in self_time.most_common(top):
        print(f"{100 * n / samples:5.1f}%  {frame}")
    print("-- total --")
    for frame, n in total.most_common(top):
        print(f"{100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
