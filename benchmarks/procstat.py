"""CPU time and memory of a process tree, read from /proc (Linux only).

Why /proc and not psutil: it is the same source psutil reads, it needs no extra dependency, and it
lets us add the CPU of *every* descendant (rotel's and grpc's threads are already in the process's
own counters; subprocesses, e.g. a future ``workers: N`` mode, are not) plus what reaped children
left in ``cutime``/``cstime``. Spans per CPU-second is then a property of the program, not of how
busy the machine was, which is what makes the rotel comparison fair on a shared 2-core box.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU seconds (user + system) of a process tree at one instant."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rfind(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1] is the ppid
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children = _children_map()
    tree = [root]
    index = 0
    while index < len(tree):
        tree.extend(children.get(tree[index], ()))
        index += 1
    return tree


def cpu_seconds(root: int) -> CpuSample:
    """User and system CPU seconds of the whole tree, incl. children already reaped by their parent."""
    user_ticks = 0
    system_ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        user_ticks += int(fields[11]) + int(fields[13])
        system_ticks += int(fields[12]) + int(fields[14])
    return CpuSample(user=user_ticks / _CLOCK_TICKS, system=system_ticks / _CLOCK_TICKS)


def _status_kib(pid: int, field: str) -> int:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_bytes(root: int) -> int:
    """Sum of ``VmHWM`` (peak resident set) over the live tree: what the kernel saw at worst."""
    return sum(_status_kib(pid, "VmHWM") for pid in process_tree(root)) * 1024


def rss_bytes(root: int) -> int:
    """Sum of the current ``VmRSS`` over the live tree."""
    return sum(_status_kib(pid, "VmRSS") for pid in process_tree(root)) * 1024


def machine_description(nproc: int | None = None) -> dict[str, str]:
    """``nproc`` (pass it if this process is already pinned), the CPU model and kernel, for the report."""
    model = "unknown"
    try:
        for line in (_PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = os.uname()
    return {
        "nproc": str(nproc if nproc is not None else len(os.sched_getaffinity(0))),
        "cpu_model": model,
        "kernel": f"{uname.sysname} {uname.release}",
        "clock_ticks_per_s": str(_CLOCK_TICKS),
    }
