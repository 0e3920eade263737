"""The benchmark, run small: `python -m bench` must keep working and keep writing its figures.

Each benchmark runs as from the command line (fewer clients, seconds and sizes), writing its
JSON and chart to a temporary directory; the figures must be there. How they compare is the
bench's to print, not a test's to assert: timings belong in bench output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from bench import agent, common, llm_stream, scaling, search, streaming, streams, tree, turns


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(scaling, "RESULTS", tmp_path)
    monkeypatch.setattr(streams, "RESULTS", tmp_path)
    return tmp_path


def run(main: Any, monkeypatch: pytest.MonkeyPatch, results: Path, *argv: str) -> Any:
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    main()
    [written] = results.glob("*.json")
    return json.loads(written.read_text())


def test_turns(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = run(turns.main, monkeypatch, results, "--clients", "2", "--seconds", "1", "--quick")
    parties = [
        figures["session_service"],
        figures["session_service_asyncmy"],
        *figures["others"].values(),
    ]
    assert len(figures["others"]) == 3
    for party in parties:
        assert party["turns"] > 0
        assert party["service_cpu_ms_per_turn"] > 0
    assert figures["sql_floor"]["turns"] > 0
    assert figures["turn_core_cpu_ms"] > 0
    assert figures["http_stack_only"]["service_cpu_ms_per_turn"] > 0
    assert set(figures["llm_call_cpu_ms"]) == {"httpx", "ours", "ChatOpenAI"}
    assert all(value > 0 for value in figures["llm_call_cpu_ms"].values())


def test_streaming(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = run(streaming.main, monkeypatch, results, "--requests", "20")
    assert figures["requests"] == 20
    assert figures["service_first_delta_p50_ms"] > 0
    assert figures["llm_first_chunk_p50_ms"] > 0


def test_scaling(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = run(scaling.main, monkeypatch, results, "--quick")
    assert [row["messages"] for row in figures["restore"]] == [10, 100, 1000]
    for row in figures["restore"]:
        assert row["restore_get_ms"] > 0
        assert row["bare_select_ms"] > 0
    assert set(figures["turn_ms_by_history"]) == {"10", "1000"}
    for row in figures["memory"]:
        assert 0 < row["bytes_per_agent_beyond_text"] < 8 * 1024
    none_expired, some_expired = figures["sweep"]
    assert (none_expired["expired"], some_expired["expired"]) == (0, 100)
    assert (results / "scaling.png").stat().st_size > 0


def test_llm_stream(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = run(llm_stream.main, monkeypatch, results, "--streams", "2", "--words", "50")
    assert len(figures["us_cpu_per_chunk"]) == 4  # ChatOpenAI as it comes ... the service's
    assert all(value > 0 for value in figures["us_cpu_per_chunk"].values())


def test_streams(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("--n", "2", "6", "--words", "8", "--pace-ms", "10")
    figures = run(streams.main, monkeypatch, results, *argv)
    assert [row["n"] for row in figures["rows"]] == [2, 6]
    for row in figures["rows"]:
        service, relay = row["service"], row["relay"]
        assert (service["ok"], service["failed"], service["lost"]) == (row["n"], 0, 0)
        assert relay["ok"] == row["n"]
        for party in (service, relay):
            assert party["first_p50_ms"] > 0
            assert party["cpu_per_delta_ms"] > 0
    assert (results / "streams.png").stat().st_size > 0


def test_tree(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("--branch", "60", "--branches", "3", "--repeats", "2")
    figures = run(tree.main, monkeypatch, results, *argv)
    assert figures["tree_messages"] == 180
    for kind in ("line", "tree"):  # CPU time is counted in clock ticks: a fast one may be 0
        ms = figures[kind].items()
        assert all(value > 0 for key, value in ms if key.endswith("_ms") and "_cpu" not in key)
        assert all(value >= 0 for key, value in ms if key.endswith("_cpu_ms"))
    assert figures["stop_watch_cpu_ms_per_look"] > 0


def test_search(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("--messages", "5000", "--mine", "1000", "--repeats", "2")
    figures = run(search.main, monkeypatch, results, *argv)
    assert figures["index"]["messages"] == 5000
    assert figures["index"]["term_rows_per_message"] > 1
    assert len(figures["queries"]) == 6
    for row in figures["queries"].values():
        assert row["search_p50_ms"] > 0
        assert row["like_p50_ms"] > 0
    assert figures["queries"]["en_common_word"]["message_hits_per_page_median"] == 20
    assert figures["queries"]["zh_two_chars"]["message_hits_per_page_median"] >= 1


def test_agent(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = run(agent.main, monkeypatch, results, "--turns", "3", "--rounds", "1")
    assert set(figures["cpu_ms_per_turn"]) == {"always", "tools, no call", "tools, one call"}
    assert figures["first_delta_after_tool_ms_p50"] > 0
