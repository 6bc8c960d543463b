"""`lsd` with a log line per gen-2 garbage collection, to tell GC pauses from other stalls (--gc-trace).

    python -m bench.gc_trace serve --config lsd.toml --bind 127.0.0.1:3000

The same as `python -m lsd ...`, plus one JSON line on stderr for each full (generation 2) collection:
{"logger": "bench.gc", "pause_ms": ..., "collected": ...}. One process only: the workers of
`lsd serve --workers N` are fresh interpreters and log nothing.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import orjson

from lsd.cli import main as lsd_main


def install() -> None:
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - started[0]) * 1000
        line = {"logger": "bench.gc", "pause_ms": round(pause_ms, 2), "collected": info["collected"]}
        sys.stderr.write(orjson.dumps(line).decode() + "\n")

    gc.callbacks.append(callback)


if __name__ == "__main__":
    install()
    sys.exit(lsd_main(sys.argv[1:]))
