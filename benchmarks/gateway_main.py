"""Start the gateway as the benchmark's process under test, optionally on uvloop.

Why a launcher instead of ``python -m gateway``: the uvloop comparison must change nothing but the
event loop, and the gateway's CLI (rightly) has no flag for it. ``--uvloop`` installs uvloop's
event loop policy before ``gateway.cli.main`` calls ``asyncio.run``; the rest is the same code path.
``--default-gc`` skips ``gateway.cli.tune_gc()``, so its effect can be measured end to end.
``--slow-callbacks MS`` prints every event-loop callback that ran longer than MS milliseconds (what
held the loop, hence every sender's latency) to stderr as JSON lines, without asyncio's debug mode
(which slows everything else down too).
"""

from __future__ import annotations

import json
import sys
import time


def _report_slow_callbacks(threshold_ms: float) -> None:
    import asyncio.events

    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        run(handle)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms >= threshold_ms:
            # A task's step shows as a bare method wrapper; its task says which coroutine, and where
            # it stopped after this step.
            owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
            what = repr(owner) if owner is not None else repr(handle)
            cpu_ms = (time.thread_time() - started_cpu) * 1000  # the rest: waiting for the GIL or the CPU
            line = {"event": "slow_callback", "ms": round(elapsed_ms, 2), "cpu_ms": round(cpu_ms, 2)}
            line["callback"] = what[:300]
            print(json.dumps(line), file=sys.stderr, flush=True)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    import gc

    started: list[float] = [0.0]

    def collection(phase: str, info: dict[str, int]) -> None:  # a collection is part of a callback's time
        if phase == "start":
            started[0] = time.perf_counter()
            return
        elapsed_ms = (time.perf_counter() - started[0]) * 1000
        if elapsed_ms >= threshold_ms / 4:
            line = {"event": "slow_gc", "ms": round(elapsed_ms, 2), "generation": info["generation"]}
            print(json.dumps(line), file=sys.stderr, flush=True)

    gc.callbacks.append(collection)


def main(argv: list[str]) -> int:
    if "--slow-callbacks" in argv:
        at = argv.index("--slow-callbacks")
        _report_slow_callbacks(float(argv[at + 1]))
        argv = argv[:at] + argv[at + 2 :]
    if "--uvloop" in argv:
        argv = [a for a in argv if a != "--uvloop"]
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if "--default-gc" in argv:
        argv = [a for a in argv if a != "--default-gc"]
        import gateway.cli

        gateway.cli.tune_gc = lambda: None
    from gateway.cli import main as gateway_main

    return gateway_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
