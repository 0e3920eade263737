"""Every figure in one run: `.venv/bin/python -m bench` (about 8 minutes on 2 cores).

Runs bench.turns, bench.streaming, bench.scaling, bench.llm_stream, bench.streams and
bench.tree one after another; each prints its table and writes its JSON (and the charts) to
bench/results/. The soak is separate: `python -m bench.soak`.
"""

from __future__ import annotations

import sys

from bench import llm_stream, scaling, streaming, streams, tree, turns

if __name__ == "__main__":  # not when a benchmark's worker process imports it
    for benchmark in (turns, streaming, scaling, llm_stream, streams, tree):
        print(f"\n=== {benchmark.__name__}", flush=True)
        sys.argv = [benchmark.__name__]
        benchmark.main()
