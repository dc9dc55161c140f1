"""Charts as inline SVG (pygal), shared by pages and PDF documents: no JavaScript, no external requests.

Values are plain numbers the caller has already converted for display (e.g. 万元 from integer fen); each chart
keeps its data as a table beside it in the template for screen readers and printing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

FONT_FAMILY = '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", sans-serif'
PALETTE = ("#b32d2e", "#2f6f9f", "#d98c1f", "#4c8c4a", "#7a5195", "#5f6b73", "#c75d8c", "#3b9c9c")
SEVERITY_COLOURS = {"red": "#c62828", "orange": "#ef6c00", "yellow": "#f9a825", "green": "#2e7d32"}

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#222",
    foreground_subtle="#888",
    colors=PALETTE,
    font_family=FONT_FAMILY,
    label_font_family=FONT_FAMILY,
    major_label_font_family=FONT_FAMILY,
    value_font_family=FONT_FAMILY,
    title_font_family=FONT_FAMILY,
    legend_font_family=FONT_FAMILY,
    tooltip_font_family=FONT_FAMILY,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=12,
    title_font_size=15,
    value_font_size=11,
)


def _config(title: str | None, width: int, height: int, formatter: Callable[[float], str] | None) -> dict:
    config: dict = {
        "title": title,
        "width": width,
        "height": height,
        "style": STYLE,
        "js": [],  # no script from elsewhere: the SVG is static
        "disable_xml_declaration": True,
        "show_legend": True,
        "legend_at_bottom": True,
        "print_values": False,
        "margin": 8,
        "explicit_size": False,
    }
    if formatter is not None:
        config["value_formatter"] = formatter
    return config


def _render(chart: pygal.graph.graph.Graph, label: str) -> Markup:
    svg = chart.render(is_unicode=True)
    # a title for assistive technology; the SVG scales with its container
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(label)}" ', 1)
    return Markup(svg)


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str | None = None,
    width: int = 720,
    height: int = 320,
    formatter: Callable[[float], str] | None = None,
    stacked: bool = False,
    horizontal: bool = False,
    colours: Sequence[str] | None = None,
    options: Mapping[str, object] | None = None,
) -> Markup:
    """Bars per label, one colour per series (``colours`` in series order); ``options`` go to pygal as they
    are (e.g. ``margin_left``, ``y_labels``)."""
    kind = (pygal.HorizontalStackedBar if stacked else pygal.HorizontalBar) if horizontal else (
        pygal.StackedBar if stacked else pygal.Bar
    )
    config = _config(title, width, height, formatter)
    if colours:
        config["style"] = Style(**{**STYLE.to_dict(), "colors": tuple(colours)})
    config.update(options or {})
    chart = kind(**config, x_label_rotation=0 if horizontal else 30)
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _render(chart, title or "柱状图")


def line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str | None = None,
    width: int = 720,
    height: int = 300,
    formatter: Callable[[float], str] | None = None,
    range_: tuple[float, float] | None = None,
    colours: Sequence[str] | None = None,
) -> Markup:
    """A trend over ordered labels (months, years)."""
    config = _config(title, width, height, formatter)
    if colours:
        config["style"] = Style(**{**STYLE.to_dict(), "colors": tuple(colours)})
    chart = pygal.Line(**config, x_label_rotation=30, show_dots=True, dots_size=3)
    if range_ is not None:
        chart.range = range_
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _render(chart, title or "趋势图")


def pie_chart(
    parts: Mapping[str, float],
    *,
    title: str | None = None,
    width: int = 420,
    height: int = 320,
    formatter: Callable[[float], str] | None = None,
    colours: Sequence[str] | None = None,
) -> Markup:
    """Shares of a whole (e.g. open alerts by severity)."""
    config = _config(title, width, height, formatter)
    if colours:
        config["style"] = Style(**{**STYLE.to_dict(), "colors": tuple(colours)})
    chart = pygal.Pie(**config, inner_radius=0.45)
    for name, value in parts.items():
        chart.add(name, value)
    return _render(chart, title or "占比图")
