"""Reading the PDFs the platform serves: their text (pypdf), their embedded fonts, and a PNG of a page
(pypdfium2) written under var/test-artefacts/documents/ for a person to look at the layout."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pypdfium2
from pypdf import PdfReader

from sanzi.platform.settings import PROJECT_ROOT
from tests.conftest import PASSWORD

ARTEFACTS = PROJECT_ROOT / "var" / "test-artefacts" / "documents"


def pdf_text(content: bytes) -> str:
    """All pages' text with the spaces and line breaks layout inserts removed (CJK text has no spaces)."""
    assert content.startswith(b"%PDF-"), content[:200]
    reader = PdfReader(io.BytesIO(content))
    return re.sub(r"\s+", "", "".join(page.extract_text() or "" for page in reader.pages))


def page_count(content: bytes) -> int:
    return len(PdfReader(io.BytesIO(content)).pages)


def embedded_fonts(content: bytes) -> dict[str, int]:
    """Base font name → size in bytes of the embedded font program, over every page."""
    fonts: dict[str, int] = {}
    for page in PdfReader(io.BytesIO(content)).pages:
        resources = page.get("/Resources")
        for font in (resources.get_object().get("/Font", {}) if resources else {}).values():
            font = font.get_object()
            descriptor = (
                font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
                if "/DescendantFonts" in font
                else font.get("/FontDescriptor", {}).get_object()
            )
            program = next(
                (descriptor[k] for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in descriptor), None
            )
            fonts[str(font["/BaseFont"])] = len(program.get_object().get_data()) if program is not None else 0
    return fonts


def save_png(content: bytes, name: str, page: int = 0) -> Path:
    """Render one page at 96 dpi to ``var/test-artefacts/documents/<name>.png`` (and keep the PDF beside it)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / f"{name}.pdf").write_bytes(content)
    document = pypdfium2.PdfDocument(content)
    try:
        image = document[page].render(scale=96 / 72).to_pil()
    finally:
        document.close()
    path = ARTEFACTS / f"{name}.png"
    image.save(path)
    assert image.width > 500 and image.height > 700
    # a blank page would be one colour: the layout put something on it
    assert len(image.convert("L").getcolors(maxcolors=1 << 16) or [0, 0]) > 2
    return path


async def browse_as(client: httpx.AsyncClient, username: str | None, password: str = PASSWORD) -> None:
    """Make the client a browser logged in as ``username`` (a page session cookie), or anonymous with None.

    Pages and documents outside /api know the caller from the session cookie, not from a bearer token."""
    client.cookies.clear()
    if username is None:
        return
    await client.get("/login")
    form = {"username": username, "password": password, "_csrf_token": client.cookies["csrftoken"]}
    response = await client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
