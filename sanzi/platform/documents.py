"""PDF documents: Jinja2 templates under templates/documents/ rendered by WeasyPrint with one shared stylesheet,
an explicitly declared CJK font, QR codes as tiny PNG images, and the fonts and stylesheet loaded once per process.

The font comes from the system through fontconfig (``make fonts`` installs Noto CJK on Debian); WeasyPrint embeds
only the glyphs a document uses, subset with HarfBuzz when libharfbuzz-subset is present (much faster than
fontTools on the large CJK fonts).
"""

from __future__ import annotations

import base64
import io
import logging
import shutil
import subprocess
import threading
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Response
from markupsafe import Markup

from sanzi.platform.document_fonts import FAMILY, built_faces
from sanzi.platform.money import fen_to_yuan
from sanzi.platform.settings import PROJECT_ROOT, get_settings

DOCUMENTS_DIR = PROJECT_ROOT / "templates" / "documents"
PDF_MEDIA_TYPE = "application/pdf"

#: the families every document asks for, in order: the documents' own cut of Noto (``sanzi documents fonts``),
#: Debian's full Noto CJK (what ``make fonts`` installs; also for characters the cut leaves out), the same design
#: under its Adobe name, then common Chinese fonts of other systems
CJK_FONT_FAMILIES = (
    FAMILY,
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Noto Serif CJK SC",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
)

# ---- the words a document shows for stored codes ----------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "trade_type": {"lease": "出租", "contracting": "发包", "transfer": "转让", "joint_venture": "合作经营"},
    "price_basis": {"total": "总价", "per_year": "元/年", "per_mu_year": "元/亩/年"},
    "asset_kind": {
        "farmland": "耕地",
        "fish_pond": "鱼塘",
        "forest": "林地",
        "construction_land": "集体建设用地",
        "building": "厂房/楼宇",
        "shop": "商铺",
        "equipment": "设备",
        "other": "其他",
    },
    "area_unit": {"mu": "亩", "m2": "平方米", "item": "台/套"},
    "severity": {"red": "红色", "orange": "橙色", "yellow": "黄色"},
    "level": {"green": "绿色", "yellow": "黄色", "orange": "橙色", "red": "红色"},
    "alert_status": {
        "new": "新预警",
        "assigned": "已分派",
        "investigating": "核查中",
        "confirmed": "属实·限期整改",
        "dismissed": "不属实·已排除",
    },
    "alert_action": {
        "raised": "系统预警",
        "updated": "预警更新",
        "assigned": "分派",
        "investigating": "开始核查",
        "confirmed": "认定属实",
        "dismissed": "排除",
        "response": "村委会回应",
        "rectified": "整改完成",
    },
    "family": {"bid": "围标串标", "undisclosed": "应进场未进场", "election": "换届选举"},
    "deposit_state": {
        "none": "未缴纳",
        "held": "已缴纳（在账）",
        "refunded": "已退还",
        "applied": "已转作价款",
        "forfeited": "已没收",
    },
    "bidder_kind": {"person": "自然人", "company": "法人/组织"},
    "subject_type": {
        "listing": "交易项目",
        "bidder": "竞买人",
        "contract": "合同",
        "village": "村",
        "entry": "记账凭证",
        "election": "换届选举",
        "asset": "资产",
        "registration": "报名",
        "counterparty": "交易对象",
    },
}


def label(value: Any, vocabulary: str) -> str:
    """The Chinese word for a stored code (the code itself when the vocabulary does not know it)."""
    if value is None:
        return "—"
    return LABELS.get(vocabulary, {}).get(str(value), str(value))


def yuan(fen: int | None) -> str:
    """Integer fen as yuan with thousands separators: 1234567 → "12,345.67"."""
    if fen is None:
        return "—"
    whole, cents = fen_to_yuan(fen).split(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}.{cents}"


def local_time(moment: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """An aware UTC time in the platform's zone (Asia/Shanghai); naive values are taken as UTC."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(get_settings().zone).strftime(pattern)


def chinese_date(day: date | datetime | None) -> str:
    if day is None:
        return "—"
    if isinstance(day, datetime):
        day = (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(get_settings().zone).date()
    return f"{day.year}年{day.month}月{day.day}日"


def qr_image(data: str, size: str = "32mm") -> Markup:
    """A QR code (error correction M) of ``data`` as an ``<img>`` of a PNG with one pixel a module, shown
    ``size`` square without smoothing. WeasyPrint draws an image far faster than the many-segment path of an
    SVG QR code, and it prints as sharp."""
    png = io.BytesIO()
    segno.make(data, error="m", micro=False).save(png, kind="png", scale=1, border=2)
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    return Markup(
        f'<img class="qr-code" src="{uri}" alt="" '
        f'style="width: {size}; height: {size}; image-rendering: pixelated">'
    )


def mask_id_number(value: str | None) -> str:
    """A resident ID or credit code with its middle hidden (printed documents travel)."""
    if not value:
        return "—"
    return value if len(value) <= 8 else value[:4] + "*" * (len(value) - 8) + value[-4:]


# ---- rendering --------------------------------------------------------------------------------------------


@lru_cache
def cjk_font_files() -> tuple[str, ...]:
    """The font files fontconfig offers for Simplified Chinese (empty when the system has none)."""
    if shutil.which("fc-list") is None:
        return ()
    listed = subprocess.run(
        ["fc-list", ":lang=zh-cn", "file"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    return tuple(sorted(line.split(":")[0] for line in listed.splitlines() if line.strip()))


class DocumentRenderer:
    """Renders a document template to PDF bytes; the Jinja environment, font configuration and stylesheet are
    built once and shared, and renders are serialised (Pango and fontconfig are not safe across threads)."""

    def __init__(self, directory: Path = DOCUMENTS_DIR) -> None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        # a dozen INFO lines per document ("Step 5 - Creating layout"...) only say that rendering goes on
        logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
        self.directory = directory
        self.environment = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters.update(
            yuan=yuan, local_time=local_time, chinese_date=chinese_date, label=label, mask_id=mask_id_number
        )
        self.environment.globals.update(qr_image=qr_image, font_families=CJK_FONT_FAMILIES)
        self.font_config = FontConfiguration()
        stylesheet = self.environment.get_template("document.css").render(
            font_families=CJK_FONT_FAMILIES,
            font_faces=[(FAMILY, weight, path.as_uri()) for weight, path in built_faces()],
        )
        self.stylesheet = CSS(string=stylesheet, font_config=self.font_config)
        self._lock = threading.Lock()

    def html(self, template: str, **context: Any) -> str:
        return self.environment.get_template(template).render(**context)

    def pdf(self, template: str, base_url: str | None = None, **context: Any) -> bytes:
        from weasyprint import HTML

        markup = self.html(template, **context)
        with self._lock:
            document = HTML(string=markup, base_url=base_url or str(self.directory))
            # no image cache across documents: their only images are their own QR codes (data: URIs)
            return document.write_pdf(stylesheets=[self.stylesheet], font_config=self.font_config)


_renderer: DocumentRenderer | None = None
_renderer_lock = threading.Lock()


def renderer() -> DocumentRenderer:
    """The process's renderer, made on first use (WeasyPrint's import and font set-up take a moment)."""
    global _renderer
    with _renderer_lock:
        if _renderer is None:
            _renderer = DocumentRenderer()
        return _renderer


async def render_pdf(template: str, **context: Any) -> bytes:
    """Render in a worker thread so a document never blocks the event loop (bids keep flowing)."""
    return await anyio.to_thread.run_sync(lambda: renderer().pdf(template, **context))


def pdf_response(content: bytes, filename: str, *, private: bool = False) -> Response[bytes]:
    """The PDF inline (the browser shows it, and can save it under ``filename``)."""
    ascii_name = filename.encode("ascii", "ignore").decode() or "document.pdf"
    return Response(
        content,
        media_type=PDF_MEDIA_TYPE,
        headers={
            "Content-Disposition": f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "private, no-store" if private else "public, max-age=60",
            "X-Content-Type-Options": "nosniff",
        },
    )
