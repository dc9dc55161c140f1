"""The documents' own font: Noto Sans CJK SC cut down once to the characters of GB 2312 (the 6,763 common
hanzi) with Latin and punctuation, so that each PDF subsets a 1.7 MB font instead of a 19 MB collection.
Characters outside it still print: the stylesheet falls back to the full system font for them.

The cut keeps only what horizontal Simplified Chinese text uses: the layout rules of the default and the
Simplified Chinese (ZHS) language systems, not the Japanese, Korean and Traditional Chinese glyph variants
(``locl``) that made up 40% of its glyphs, and no vertical metrics (vmtx, vhea, VORG). WeasyPrint keeps glyph
ids when it subsets a font for a PDF, so every glyph of the cut costs each document a few bytes of metrics and
offsets to subset and compress: fewer glyphs make every document cheaper. The text renders the same.

The cut's outlines are then converted from CFF (cubic) to TrueType (quadratic, within 1/1000 em): HarfBuzz
subsets TrueType glyphs by copying them, where CFF ones must be desubroutinized, and the deflated glyphs are
smaller: each document's font subsetting takes about half the time and its PDF about half the size.

Built by ``sanzi documents fonts`` (``make setup`` runs it) with HarfBuzz's ``hb-subset`` when installed, else
with fontTools (slower), then converted to TrueType with fontTools: under a minute in all.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sanzi.platform.settings import get_settings

FAMILY = "Sanzi SC"
SOURCE_FAMILY = "Noto Sans CJK SC"
WEIGHTS = {"Regular": 400, "Bold": 700}
#: in the file names: a cut made by an older version of the recipe is not used (``make setup`` builds this one)
CUT_VERSION = 3
#: the OpenType language systems kept besides each script's default: the documents are ``lang="zh-CN"``
KEPT_LANGUAGES = ("ZHS ",)
#: tables only vertical writing uses (the documents are horizontal)
VERTICAL_TABLES = ("vmtx", "vhea", "VORG")


def fonts_dir() -> Path:
    return get_settings().var_dir / "fonts"


def font_path(weight: str) -> Path:
    return fonts_dir() / f"SanziSC-{weight}-v{CUT_VERSION}.ttf"


def remove_old_cuts() -> list[Path]:
    """Delete the documents' fonts of earlier cuts (other versions of ``SanziSC-*``), which nothing reads any more;
    the files removed."""
    current = {font_path(weight) for weight in WEIGHTS}
    old = [path for path in sorted(fonts_dir().glob("SanziSC-*")) if path not in current and path.is_file()]
    for path in old:
        path.unlink()
    return old


def built_faces() -> list[tuple[int, Path]]:
    """(CSS weight, file) of every face that has been built."""
    return [(css, font_path(name)) for name, css in WEIGHTS.items() if font_path(name).is_file()]


def charset() -> str:
    """GB 2312's characters, printable ASCII and Latin-1, general punctuation, CJK symbols, full-width forms."""
    characters = {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0xA0, 0x100)}
    for ranges in (
        (0x2000, 0x2070),
        (0x20A0, 0x20C0),
        (0x2100, 0x2200),
        (0x2460, 0x2500),
        (0x25A0, 0x2600),
        (0x3000, 0x3040),
        (0xFF00, 0xFFF0),
    ):
        characters |= {chr(c) for c in range(*ranges)}
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                characters.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    # Guangzhou's place names use characters GB 2312 lacks (塱, 滘, 氹, 埗, ...): keep every one of them
    from sanzi.platform.geography import shipped_divisions_path  # the app's models: only when cutting

    characters |= set(shipped_divisions_path().read_text(encoding="utf-8"))
    return "".join(sorted(ch for ch in characters if ch.isprintable()))


@dataclass(frozen=True)
class SourceFace:
    path: Path
    index: int


def source_face(weight: str) -> SourceFace | None:
    """The system's Noto Sans CJK SC file and face index for this weight, as fontconfig finds it."""
    if shutil.which("fc-match") is None:
        return None
    found = subprocess.run(
        ["fc-match", "-f", "%{family}|%{file}|%{index}", f"{SOURCE_FAMILY}:style={weight}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    family, _, rest = found.partition("|")
    path, _, index = rest.partition("|")
    if SOURCE_FAMILY not in family.split(",") or not path or not Path(path).is_file():
        return None
    return SourceFace(Path(path), int(index or 0))


def keep_languages(font: Any, languages: tuple[str, ...] = KEPT_LANGUAGES) -> None:
    """Drop the layout rules (GSUB, GPOS) of every language system but the scripts' defaults and ``languages``,
    and the lookups only they used; a subset made afterwards leaves out the glyphs only those lookups reach."""
    import fontTools.subset  # noqa: F401  (adds prune_lookups to the GSUB and GPOS tables)

    for tag in ("GSUB", "GPOS"):
        if tag not in font:
            continue
        table = font[tag].table
        for record in table.ScriptList.ScriptRecord if table.ScriptList else ():
            record.Script.LangSysRecord = [
                kept for kept in record.Script.LangSysRecord if kept.LangSysTag in languages
            ]
            record.Script.LangSysCount = len(record.Script.LangSysRecord)
        font[tag].prune_lookups()


def _hb_subset(hb_subset: str, source: Path, index: int, characters: Path, target: Path) -> None:
    subprocess.run(
        [
            hb_subset,
            str(source),
            f"--face-index={index}",
            f"--text-file={characters}",
            "--layout-features=*",
            "--name-IDs=*",
            "--name-languages=*",
            "--no-hinting",
            f"--drop-tables+={','.join(VERTICAL_TABLES)}",
            f"--output-file={target}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


def subset_face(source: SourceFace, text: str, target: Path) -> str:
    """Write the subset of ``source`` covering ``text`` to ``target``; returns the tool used."""
    from fontTools.ttLib import TTFont

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    hb_subset = shutil.which("hb-subset")
    if hb_subset:
        # cut to the characters, drop the other languages' rules, cut again (the glyphs only they reached go)
        with tempfile.TemporaryDirectory() as work:
            characters, first = Path(work) / "characters.txt", Path(work) / "first.otf"
            characters.write_text(text, encoding="utf-8")
            _hb_subset(hb_subset, source.path, source.index, characters, first)
            font = TTFont(first, lazy=True)
            keep_languages(font)
            font.save(first)
            font.close()
            _hb_subset(hb_subset, first, 0, characters, partial)
        tool = "hb-subset"
    else:
        from fontTools import subset

        options = subset.Options()
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        options.name_languages = ["*"]
        options.hinting = False
        options.notdef_outline = True
        options.drop_tables += list(VERTICAL_TABLES)
        font = TTFont(source.path, fontNumber=source.index, lazy=False)
        keep_languages(font)
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=text)
        subsetter.subset(font)
        font.save(partial)
        tool = "fontTools"
    to_truetype(partial)
    partial.replace(target)
    return tool


def to_truetype(path: Path, max_error: float = 1.0) -> None:
    """Rewrite the CFF font at ``path`` with TrueType outlines: each cubic curve as quadratic ones within
    ``max_error`` font units (of 1,000 to the em: invisible in print), the metrics and layout tables as they were."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(path)
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        # CFF contours run counter-clockwise, TrueType ones clockwise
        glyph_set[name].draw(Cu2QuPen(pen, max_error, reverse_direction=True))
        glyf.glyphs[name] = pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    maxp = newTable("maxp")  # version 1.0 (TrueType); the counts are recomputed when the font is saved
    maxp.tableVersion = 0x00010000
    maxp.numGlyphs = len(order)
    maxp.maxZones = 1
    for field in (
        "maxPoints", "maxContours", "maxCompositePoints", "maxCompositeContours", "maxTwilightPoints",
        "maxStorage", "maxFunctionDefs", "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
        "maxComponentElements", "maxComponentDepth",
    ):  # fmt: skip
        setattr(maxp, field, 0)
    font["maxp"] = maxp
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names (CID-keyed CFF has none worth keeping)
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    font.sfntVersion = "\x00\x01\x00\x00"
    font.save(path)
    font.close()


@click.group(name="documents", help="文书 / PDF documents")
def documents_group() -> None:
    pass


@documents_group.command("fonts", help="Build the documents' font from the system's Noto Sans CJK SC (once).")
@click.option("--force", is_flag=True, help="rebuild even if the font is there")
def build_fonts(force: bool) -> None:
    from rich.console import Console

    console = Console()
    for path in remove_old_cuts():
        console.print(f"{path}: an earlier cut, removed")
    text = charset()
    for weight in WEIGHTS:
        target = font_path(weight)
        if target.is_file() and not force:
            console.print(f"{target}: already built")
            continue
        source = source_face(weight)
        if source is None:
            # not an error: documents then use whatever Chinese font the system has, only slower
            console.print(
                f"[yellow]未找到 {SOURCE_FAMILY} {weight} / {SOURCE_FAMILY} {weight} not found[/]: "
                "install fonts-noto-cjk (make fonts) for the documents' own font"
            )
            continue
        with console.status(f"{SOURCE_FAMILY} {weight} → {target.name} ({len(text)} characters)"):
            try:
                tool = subset_face(source, text, target)
            except (subprocess.CalledProcessError, OSError) as exc:
                raise click.ClickException(
                    f"字体子集生成失败 / could not subset {source.path}: {exc}"
                ) from exc
        console.print(f"{target}: {target.stat().st_size // 1024} KiB, with {tool}")


groups: list[click.Group] = [documents_group]
