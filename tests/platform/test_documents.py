"""The document renderer: Chinese text survives into the PDF with the declared CJK font embedded as a subset,
the filters documents use (yuan from fen, Asia/Shanghai times), the QR helper, and the set-up's font check."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import segno
from PIL import Image

from sanzi.platform.document_fonts import built_faces, charset
from sanzi.platform.documents import (
    DOCUMENTS_DIR,
    DocumentRenderer,
    chinese_date,
    cjk_font_files,
    label,
    local_time,
    mask_id_number,
    qr_image,
    yuan,
)
from sanzi.platform.settings import PROJECT_ROOT
from tests.platform.pdfs import embedded_fonts, pdf_text, save_png

SAMPLE = """{% extends "base.html" %}
{% block body %}<h1>农村集体资产交易测试文件</h1><p>成交价 ¥{{ 1234567 | yuan }} 元，{{ moment | local_time }}。</p>
<div class="verify"><div class="qr">{{ qr_image("https://sanzi.example/verify/1-ABCD-EFGH-JKLM-NPQR") }}</div></div>
{% endblock %}"""


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> DocumentRenderer:
    """The real stylesheet and base template, and one sample document beside them."""
    directory = tmp_path_factory.mktemp("documents")
    for name in ("document.css", "base.html"):
        shutil.copy(DOCUMENTS_DIR / name, directory / name)
    (directory / "sample.html").write_text(SAMPLE, encoding="utf-8")
    return DocumentRenderer(Path(directory))


def test_the_system_offers_a_chinese_font() -> None:
    assert cjk_font_files(), "no Chinese font found by fontconfig: run `make fonts` (installs fonts-noto-cjk)"


def test_chinese_renders_with_the_declared_font_embedded_as_a_subset(renderer: DocumentRenderer) -> None:
    moment = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
    content = renderer.pdf("sample.html", generated_at=moment, moment=moment, watermark=None)
    text = pdf_text(content)
    assert "农村集体资产交易测试文件" in text and "成交价¥12,345.67元" in text
    assert "2026-03-0300:30" in text  # 16:30 UTC is half past midnight the next day in Shanghai
    fonts = embedded_fonts(content)
    own_font = [name for name in fonts if "Sanzi-SC" in name]
    assert own_font or any("Noto-Sans-CJK-SC" in name for name in fonts), fonts
    # subset: each embedded program is a small part of the ~19 MB font collection it comes from
    assert fonts and all(0 < size < 2_000_000 for size in fonts.values()), fonts
    save_png(content, "renderer_sample")


def test_the_stylesheet_declares_the_cjk_families_by_name(renderer: DocumentRenderer) -> None:
    css = (DOCUMENTS_DIR / "document.css").read_text(encoding="utf-8")
    rendered = renderer.environment.get_template("document.css").render(
        font_families=("Sanzi SC", "Noto Sans CJK SC"), font_faces=[("Sanzi SC", 700, "file:///fonts/b.otf")]
    )
    assert "{% for family in font_families %}" in css
    assert 'font-family: "Sanzi SC", "Noto Sans CJK SC", sans-serif;' in rendered
    assert (
        '@font-face { font-family: "Sanzi SC"; src: url("file:///fonts/b.otf"); font-weight: 700; }'
        in rendered
    )


def test_the_documents_font_covers_common_hanzi_and_rarer_ones_fall_back(tmp_path: Path) -> None:
    """The cut of Noto covers GB 2312; a name with a character beyond it (堃, 䶮) still prints, from the full font."""
    faces = built_faces()
    if not faces:
        pytest.skip("the documents' font is not built here (sanzi documents fonts)")
    assert "永" in charset() and "堃" not in charset()
    for name in ("document.css", "base.html"):
        shutil.copy(DOCUMENTS_DIR / name, tmp_path / name)
    (tmp_path / "names.html").write_text(
        '{% extends "base.html" %}{% block body %}<p>竞得人：王堃、刘䶮</p>{% endblock %}', encoding="utf-8"
    )
    content = DocumentRenderer(tmp_path).pdf("names.html", generated_at=datetime.now(UTC), watermark=None)
    assert "竞得人：王堃、刘䶮" in pdf_text(content)
    names = embedded_fonts(content)
    assert any("Sanzi-SC" in name for name in names) and any("Noto-Sans-CJK" in name for name in names), names


def test_the_documents_font_keeps_only_what_horizontal_simplified_chinese_uses() -> None:
    """TrueType outlines, no Japanese, Korean or Traditional variants and no vertical metrics: WeasyPrint keeps
    glyph ids, so each glyph of the cut costs every document's subset and compression; GB 2312's has under 9,000."""
    from fontTools.ttLib import TTFont

    faces = built_faces()
    if not faces:
        pytest.skip("the documents' font is not built here (sanzi documents fonts)")
    for _, path in faces:
        font = TTFont(path)
        assert "glyf" in font and "CFF " not in font  # TrueType outlines: copied, not desubroutinized, per PDF
        assert not {"vmtx", "vhea", "VORG"} & set(font.keys())
        for tag in ("GSUB", "GPOS"):
            scripts = font[tag].table.ScriptList.ScriptRecord
            assert {lang.LangSysTag for s in scripts for lang in s.Script.LangSysRecord} <= {"ZHS "}
        assert font["maxp"].numGlyphs < 9_000 and ord("永") in font.getBestCmap()


def test_amounts_times_and_words() -> None:
    assert (
        yuan(123456789) == "1,234,567.89"
        and yuan(5) == "0.05"
        and yuan(-150) == "-1.50"
        and yuan(None) == "—"
    )
    assert local_time(datetime(2026, 10, 31, 16, 0, tzinfo=UTC)) == "2026-11-01 00:00"
    assert local_time(datetime(2026, 10, 31, 16, 0)) == "2026-11-01 00:00"  # naive values are UTC (SQLite)
    assert chinese_date(date(2026, 3, 2)) == "2026年3月2日"
    assert chinese_date(datetime(2026, 3, 1, 17, 0, tzinfo=UTC)) == "2026年3月2日"
    assert mask_id_number("440111198001011231") == "4401**********1231" and mask_id_number(None) == "—"
    assert label("fish_pond", "asset_kind") == "鱼塘" and label("unknown", "asset_kind") == "unknown"


def test_qr_code_is_a_sharp_png_image_of_the_data() -> None:
    """One pixel a module (segno's own rendering), shown at its size without smoothing; decoding it gives the
    matrix segno makes for the same data."""
    url = "https://sanzi.example/verify/1-ABCD-EFGH-JKLM-NPQR"
    tag = str(qr_image(url))
    found = re.fullmatch(r'<img class="qr-code" src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="" (.*)>', tag)
    assert found, tag
    assert "width: 32mm; height: 32mm; image-rendering: pixelated" in found.group(2)
    image = Image.open(io.BytesIO(base64.b64decode(found.group(1)))).convert("1")
    matrix = segno.make(url, error="m", micro=False).matrix
    assert image.size == (len(matrix) + 4, len(matrix) + 4)  # a quiet zone of two modules
    modules = [[image.getpixel((x + 2, y + 2)) == 0 for x in range(len(row))] for y, row in enumerate(matrix)]
    assert modules == [[bool(cell) for cell in row] for row in matrix]
    assert qr_image("https://sanzi.example/verify/1-ABCD-EFGH-JKLM-NPQS") != tag


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_fonts_finds_the_font_or_says_what_to_install() -> None:
    done = subprocess.run(
        ["make", "-s", "fonts"], check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CJK font:" in done.stdout or "apt-get install" in done.stdout, done.stdout


def test_building_the_font_again_removes_earlier_cuts_and_keeps_the_current_one(tmp_path: Path) -> None:
    faces = built_faces()
    if len(faces) != 2:
        pytest.skip("the documents' font is not built here (sanzi documents fonts)")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for _, path in faces:
        shutil.copy(path, fonts / path.name)
    for old in ("SanziSC-Regular.otf", "SanziSC-Bold.otf", "SanziSC-Regular-v2.ttf"):
        (fonts / old).write_bytes(b"an earlier cut")
    (fonts / "other.ttf").write_bytes(b"not ours")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "sanzi"), "documents", "fonts"],
        env={"PATH": "/usr/bin:/bin", "SANZI_VAR_DIR": str(tmp_path), "SANZI_ENV": "test", "COLUMNS": "200"},
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in fonts.iterdir()) == sorted([*(p.name for _, p in faces), "other.ttf"])
    assert "SanziSC-Regular-v2.ttf: an earlier cut, removed" in result.stdout
    assert result.stdout.count("already built") == 2
