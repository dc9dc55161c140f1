"""The benchmark runner's arithmetic and its report: percentiles, medians with their range, ratios against
the baseline of the same run, and the README table replaced between its markers (and nowhere else)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.load import fen_to_yuan, problem_code, yuan_to_fen
from benchmarks.report import (
    TABLE_END,
    TABLE_START,
    Figure,
    Spread,
    markdown,
    percentile,
    ratios,
    update_readme,
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_spread_is_the_median_with_its_range() -> None:
    spread = Spread.of([3.0, 1.0, 2.0, 10.0])
    assert (spread.median, spread.low, spread.high, spread.runs) == (2.5, 1.0, 10.0, 4)
    assert spread.show(" ms") == "2.5 ms (1.0–10.0, n=4)"
    assert Spread.of([]).show() == "not measured"
    assert Spread.of([float("nan")]).show() == "no answer within the window"


def test_ratios_pair_runs_with_their_own_baseline() -> None:
    paired = ratios([50.0, 60.0, 90.0], [100.0, 100.0, 100.0])
    assert paired.median == pytest.approx(0.6) and paired.runs == 3
    unpaired = ratios([50.0], [100.0, 200.0, 300.0])  # against the baseline's median
    assert unpaired.median == pytest.approx(0.25)


def test_money_in_the_load_generator_is_integer_fen() -> None:
    assert yuan_to_fen("100100.05") == 10_010_005
    assert yuan_to_fen("7") == 700
    assert fen_to_yuan(10_010_005) == "100100.05"
    assert problem_code({"type": "https://sanzi.example/problems/amount_too_low"}, 422) == "amount_too_low"
    assert problem_code(None, 502) == "502"


def test_the_readme_table_is_replaced_between_its_markers_only(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Benchmarks\n\nhand-written\n\n{TABLE_START}\nold table\n{TABLE_END}\n\nafter\n", "utf-8"
    )
    figures = [
        Figure(
            "pages",
            "results list, requests/s",
            Spread.of([40.0, 50.0]),
            "/s",
            Spread.of([100.0, 100.0]),
            "trivial endpoint",
            ratios([40.0, 50.0], [100.0, 100.0]),
            "≥ 25% of trivial",
            True,
            digits=0,
        ),
        Figure(
            "documents", "certificate PDF", None, " ms", target="median < 150 ms", note="not measured here"
        ),
    ]
    context = {
        "finished_at": "2026-11-30 22:00 UTC",
        "machine": "2 CPUs",
        "mode": "quick",
        "elapsed_seconds": 90.0,
        "data": "scenario",
    }
    update_readme(readme, markdown(figures, context))
    text = readme.read_text("utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written\n") and text.endswith("\n\nafter\n")
    assert "old table" not in text
    assert (
        "| results list, requests/s | 45/s (40–50, n=2) | trivial endpoint: 100/s (100–100, n=2) | 0.45× "
        in text
    )
    assert "| certificate PDF — not measured here | not measured |" in text
    assert json.dumps(figures[0].to_json(), default=str)  # results.json can carry every figure
