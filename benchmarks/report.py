"""Statistics over repeated runs; the results as JSON and as the Markdown table of benchmarks/README.md."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Spread:
    """The median of several runs with the lowest and highest, and how many runs there were."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        values = [v for v in values if not math.isnan(v)] or values
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, unit: str = "", digits: int = 1) -> str:
        if self.runs == 0:
            return "not measured"
        if math.isnan(self.median):
            return "no answer within the window"
        text = f"{self.median:,.{digits}f}{unit}"
        if self.runs > 1:
            text += f" ({self.low:,.{digits}f}–{self.high:,.{digits}f}, n={self.runs})"
        return text


@dataclass
class Figure:
    """One line of the table: a measurement beside its baseline from the same run, and its target."""

    section: str
    name: str
    value: Spread | None
    unit: str
    baseline: Spread | None = None
    baseline_name: str = ""
    #: value / baseline per run, summarised the same way (None when there is no baseline)
    ratio: Spread | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    digits: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("digits")
        return data


def ratios(values: list[float], baselines: list[float]) -> Spread:
    """Per-run ratios when the runs pair up, else the ratio of every value to the baseline's median."""
    if len(values) == len(baselines):
        return Spread.of([v / b for v, b in zip(values, baselines) if b])
    base = statistics.median(baselines) if baselines else 0
    return Spread.of([v / base for v in values] if base else [])


def markdown(figures: list[Figure], context: dict[str, Any]) -> str:
    lines = [
        f"Measured {context['finished_at']} on {context['machine']} ({context['mode']} mode, "
        f"{context['elapsed_seconds']:.0f} s in all). Data: {context['data']}.",
        "",
        "| figure | measured: median (min–max, runs) | baseline from the same run | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    section = None
    for figure in figures:
        if figure.section != section:
            section = figure.section
            lines.append(f"| **{section}** | | | | | |")
        value = figure.value.show(figure.unit, figure.digits) if figure.value else "not measured"
        baseline = ""
        if figure.baseline is not None:
            baseline = f"{figure.baseline_name}: {figure.baseline.show(figure.unit, figure.digits)}"
        ratio = figure.ratio.show("×", 2) if figure.ratio is not None and figure.ratio.runs else ""
        met = {True: "yes", False: "**no**", None: ""}[figure.met]
        name = figure.name + (f" — {figure.note}" if figure.note else "")
        lines.append(f"| {name} | {value} | {baseline} | {ratio} | {figure.target} | {met} |")
    return "\n".join(lines)


def update_readme(path: Any, table: str) -> None:
    """Replace the table between the markers of the README (the rest of the page is hand-written)."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    path.write_text(text[: start + len(TABLE_START)] + "\n" + table + "\n" + text[end:], encoding="utf-8")
