"""The bench (`python -m bench`) imports and its statistics helpers are right. Nothing is started here:
no stack, no cog server, no timing."""

from __future__ import annotations

import importlib
import math
from datetime import UTC, datetime

import pytest

from bench import stats


def test_bench_modules_import():
    for name in ("bench", "bench.stats", "bench.harness", "bench.scenarios", "bench.report", "bench.cli"):
        importlib.import_module(name)
    from bench.cli import FULL, QUICK

    assert QUICK["warm_n"] < FULL["warm_n"] and QUICK["throughput_n"] < FULL["throughput_n"]


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 90, 5.0),
        ([1, 2, 3, 4], 50, 2.5),  # between the two middle values
        ([4, 1, 3, 2], 50, 2.5),  # order does not matter
        ([1, 2, 3, 4, 5], 50, 3.0),
        ([1, 2, 3, 4, 5], 0, 1.0),
        ([1, 2, 3, 4, 5], 100, 5.0),
        ([1, 2, 3, 4, 5], 90, 4.6),  # rank 0.9 * 4 = 3.6 -> 4 + 0.6 * (5 - 4)
        (list(range(1, 11)), 90, 9.1),
        ([10, 20], 25, 12.5),
    ],
)
def test_percentile_linear_interpolation(values, p, expected):
    assert stats.percentile(values, p) == pytest.approx(expected)


def test_percentile_matches_numpy_linear_definition():
    values = [0.3, 7.1, 2.2, 9.9, 4.4, 4.4, 1.0, 8.5, 6.0, 3.3, 5.7]
    ordered = sorted(values)
    for p in (0, 10, 33.3, 50, 66, 90, 99, 100):
        rank = (len(ordered) - 1) * p / 100
        lo, hi = math.floor(rank), math.ceil(rank)
        expected = ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
        assert stats.percentile(values, p) == pytest.approx(expected)


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)
    with pytest.raises(ValueError):
        stats.percentile([1.0], -1)


def test_summarize_and_mean():
    summary = stats.summarize([3.0, 1.0, 2.0, 4.0])
    assert summary["n"] == 4
    assert summary["mean"] == pytest.approx(2.5)
    assert summary["min"] == 1.0 and summary["max"] == 4.0
    assert summary["p50"] == pytest.approx(2.5)
    assert summary["p90"] == pytest.approx(3.7)
    assert summary["p99"] == pytest.approx(3.97)
    assert stats.summarize([]) == {"n": 0}
    assert stats.mean([0.1] * 10) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        stats.mean([])


def test_paired_difference_and_ms():
    assert stats.paired_difference([3.0, 5.0], [1.0, 1.5]) == [2.0, 3.5]
    with pytest.raises(ValueError):
        stats.paired_difference([1.0], [1.0, 2.0])
    assert stats.ms(0.0125) == pytest.approx(12.5)
    assert stats.ms(None) is None


def test_parse_time_accepts_cog_and_cogplane_timestamps():
    from bench.harness import parse_time

    cog = parse_time("2026-11-27T13:21:01.688850094+00:00")  # coglet: nanoseconds
    ours = parse_time("2026-11-27T13:21:01.688850Z")  # cogplane: microseconds, Z
    assert cog == ours == datetime(2026, 11, 27, 13, 21, 1, 688850, tzinfo=UTC)
    assert parse_time("2026-11-27T13:21:01Z") == datetime(2026, 11, 27, 13, 21, 1, tzinfo=UTC)
    short = parse_time("2026-11-27T13:21:01.5+00:00")
    assert short.microsecond == 500000


def test_report_renders_a_minimal_result():
    from bench.report import render

    text = render(
        {
            "meta": {
                "mode": "quick",
                "when": "now",
                "host": "h",
                "cpus": 2,
                "cpu": "c",
                "python": "3.11",
                "env_cache": "/tmp/envs",
                "bench_seconds": 1.0,
            },
            "environments": {
                "hello": {"ok": True, "was_cached": True, "seconds": 0.0},
                "embeddings": {"ok": False, "error": "no torch"},
            },
            "warm": None,
            "warm_after_idle": None,
            "cold": [],
            "throughput": [],
            "errors": [{"section": "x", "error": "boom"}],
        }
    )
    assert "WARM PATH" in text and "COLD BOOT" in text and "THROUGHPUT" in text
    assert "embeddings: NOT AVAILABLE (no torch)" in text and "x: boom" in text


def test_report_renders_the_load_and_environment_sections():
    from bench.report import render

    cell = {
        "runners": 2,
        "clients": 16,
        "per_s": 80.0,
        "latency_ms": {"p50": 150.0, "p99": 400.0},
        "cpu_ms_per_prediction": {"api": 3.0, "runners": 2.0, "cog": 8.0},
    }
    build = {"ok": True, "seconds": 60.0, "env_mb": 1400}
    text = render(
        {
            "meta": {"mode": "full", "when": "now", "host": "h", "cpus": 2, "cpu": "c", "python": "3.11"}
            | {"env_cache": "/tmp/envs"},
            "environments": {},
            "load": [cell, {**cell, "clients": 64, "per_s": 76.0}, {"runners": 8, "clients": 4, "error": "Boom: x"}],
            "environment_builds": [
                {"model": "examples/embeddings", "installer": "pip", "cold": build, "warm": build},
                {"model": "examples/embeddings", "installer": "uv", "cold": {**build, "seconds": 10.0}, "warm": {}},
            ],
            "errors": [],
        }
    )
    assert "4. LOAD" in text and "ERROR Boom: x" in text
    assert "at the most clients 95 % of the best" in text  # 76 of 80
    assert "5. ENVIRONMENT BUILDS" in text and "6.0x" in text  # pip 60 s / uv 10 s, cold
