"""Summarise a py-spy ``--format raw`` profile: where the samples go, self and inclusive.

Usage (profile one case of a benchmark, then summarise)::

    .venv/bin/py-spy record -r 250 --format raw -o /tmp/chain.txt -- \\
        .venv/bin/python -m benchmarks.batch_hourly_chain --worker chain --dataset_json <dataset.json>
    .venv/bin/python -m benchmarks.profile_summary /tmp/chain.txt --top 30 --match beam_pipelines

``--match`` restricts the inclusive table to frames whose file contains the text
(e.g. ``beam_pipelines`` for our code, ``apache_beam/runners`` for the runner).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def summarise(stacks, top: int, match: str | None) -> str:
    total = sum(c for _, c in stacks)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        names = [_name(f) for f in frames]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            if match is None or match in name:
                inclusive[name] += count
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    out += ["", f"inclusive time{' (frames matching ' + repr(match) + ')' if match else ''}:"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary", description=__doc__.split("\n")[0])
    parser.add_argument("profile", help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only frames whose name contains this, in the inclusive table")
    args = parser.parse_args(argv)
    print(summarise(load(args.profile), args.top, args.match))


if __name__ == "__main__":
    main()
