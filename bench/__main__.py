"""Every figure in one run: `.venv/bin/python -m bench` (a few minutes on 2 cores).

Runs bench.turns, bench.streaming and bench.scaling one after another; each prints its table
and writes its JSON (and the scaling chart) to bench/results/. The soak is separate:
`python -m bench.soak`.
"""

from __future__ import annotations

import sys

from bench import scaling, streaming, turns

if __name__ == "__main__":  # not when a benchmark's worker process imports it
    for benchmark in (turns, streaming, scaling):
        print(f"\n=== {benchmark.__name__}", flush=True)
        sys.argv = [benchmark.__name__]
        benchmark.main()
