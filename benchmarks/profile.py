"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) into where the time goes.

py-spy's flame graph is the tool for exploring; this summary is what goes into RESULTS.md: the
functions with the most samples on top of the stack (self time) and in the stack (inclusive time),
with the frame's file shortened to what a reader of this repository recognises.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """``export (/work/main/gateway/receivers/otlp_grpc.py:43)`` -> ``export (gateway/receivers/otlp_grpc.py)``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file})" if file else match.group("func")


def summarise(raw_path: Path, top: int = 25) -> str:
    """A plain-text report: total samples, then self and inclusive shares of the top frames."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return "no samples\n"
    lines = [f"samples: {total}", "", "self time (top of stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    lines += ["", "inclusive time (anywhere in the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    ours = [(frame, n) for frame, n in inclusive.most_common() if "(gateway/" in frame or "(proto_handlers/" in frame]
    lines += ["", "inclusive time of this repository's functions:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ours[:top]]
    return "\n".join(lines) + "\n"
