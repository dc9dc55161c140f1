"""Admins upload an interchange import over the API: a zip archive or the files as multipart form data."""

from __future__ import annotations

from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, post
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.interchange.loader import import_sources
from sanzi.interchange.validation import Source, sources_from_zip
from sanzi.platform.auth import roles
from sanzi.platform.models import Role
from sanzi.platform.problems import DomainError, problem

#: the largest upload taken (an app may set ``state.import_max_bytes``); a whole city goes through the CLI
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _too_large(request: Request[Any, Any, Any], limit: int) -> Response[dict[str, Any]]:
    megabytes = f"{limit / 1024 / 1024:.1f}".rstrip("0").rstrip(".")
    return problem(
        request,
        413,
        f"上传的文件超过 {megabytes} MB 的上限；请拆分后上传，或在服务器上用 `sanzi import` 导入",
        f"the upload exceeds the limit of {megabytes} MB ({limit} bytes); split it, "
        "or run `sanzi import` on the server",
        code="too_large",
        limit_bytes=limit,
    )


def multipart_sources(body: bytes, content_type: str) -> list[Source]:
    """The uploaded files of a multipart/form-data body (each part with a file name is one file)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise DomainError("无法解析上传的表单", "the multipart form could not be read", field="files")
    sources = []
    for part in message.iter_parts():
        filename = part.get_filename()
        if not filename:
            continue
        payload = part.get_payload(decode=True) or b""
        name = Path(filename).name
        sources.extend(sources_from_zip(payload) if name.endswith(".zip") else [Source(name, payload)])
    return sources


class ImportController(Controller):
    path = "/api/imports"
    tags = ["interchange"]

    @post(
        operation_id="ImportRecords",
        opt=roles(Role.ADMIN),
        summary="Import a city's records (interchange format v1): checked first, written only when valid",
        description=(
            "The body is a zip archive (Content-Type application/zip) or multipart/form-data with the files "
            "(cadres.csv, assets.jsonl, ...; a .zip part is unpacked). `dry_run` checks without writing; "
            "`per_file` writes the files without problems. Returns the validation report: 200 when written "
            "(or a clean dry run), 422 with the problems otherwise, 413 above the size limit."
        ),
        request_max_body_size=None,  # the handler counts the bytes itself, to answer with its own 413
        status_code=200,
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        dry_run: bool = False,
        per_file: bool = False,
    ) -> Response[dict[str, Any]]:
        limit = int(request.app.state.get("import_max_bytes", DEFAULT_MAX_BYTES))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return _too_large(request, limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _too_large(request, limit)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            sources = multipart_sources(bytes(body), content_type)
        elif content_type.split(";")[0].strip() in ("application/zip", "application/x-zip-compressed"):
            sources = sources_from_zip(bytes(body))
        else:
            return problem(
                request,
                415,
                "请上传 zip 压缩包（application/zip）或以 multipart/form-data 上传文件",
                "send a zip archive (application/zip) or the files as multipart/form-data",
                code="unsupported_media_type",
            )
        today = datetime.now(request.app.state.settings.zone).date()
        plan, written = await import_sources(
            db_session, sources, today=today, dry_run=dry_run, per_file=per_file, actor_id=request.user.id
        )
        report = {**plan.report(), "dry_run": dry_run, "per_file": per_file, "written": written}
        if plan.valid or (per_file and sum(written.values())):
            return Response(report, status_code=200)
        first = plan.problems[0]
        return problem(
            request,
            422,
            f"导入数据有 {plan.problem_count} 个问题，未写入"
            + ("任何数据" if not sum(written.values()) else "有问题的文件")
            + f"；第一个：{first.file} 第 {first.line} 行「{first.field}」：{first.message}",
            f"{plan.problem_count} problems in the import, nothing written; "
            f"first: {first.file} line {first.line} "
            f"[{first.field}]: {first.message_en}",
            code="import_invalid",
            **report,
        )


controllers = [ImportController]
