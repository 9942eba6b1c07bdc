"""Start the gateway as the benchmark's process under test, optionally on uvloop.

Why a launcher instead of ``python -m gateway``: the uvloop comparison must change nothing but the
event loop, and the gateway's CLI (rightly) has no flag for it. ``--uvloop`` installs uvloop's
event loop policy before ``gateway.cli.main`` calls ``asyncio.run``; the rest is the same code path.
``--default-gc`` skips ``gateway.cli.tune_gc()``, so its effect can be measured end to end.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
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
