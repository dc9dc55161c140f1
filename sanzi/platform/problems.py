"""Errors as RFC 9457 problem details, each carrying a Chinese and an English message and the field at fault."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.exceptions import NotFoundError as RepositoryNotFoundError
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass
class FieldError:
    field: str
    message: str
    message_en: str


@dataclass
class DomainError(Exception):
    """A refusal by a domain rule: nothing was written; the caller can correct the named field."""

    message: str
    message_en: str
    field: str | None = None
    status_code: int = 422
    code: str = "invalid"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message_en} ({self.field})" if self.field else self.message_en


class NotFound(DomainError):
    def __init__(self, what_zh: str, what_en: str) -> None:
        super().__init__(f"{what_zh}不存在", f"{what_en} not found", status_code=404, code="not_found")


class Forbidden(DomainError):
    def __init__(self, message: str = "无权访问该对象", message_en: str = "not allowed for this object") -> None:
        super().__init__(message, message_en, status_code=403, code="forbidden")


class Conflict(DomainError):
    def __init__(self, message: str, message_en: str, field: str | None = None) -> None:
        super().__init__(message, message_en, field=field, status_code=409, code="conflict")


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_DEFAULT_ZH = {
    400: "请求无效",
    401: "请先登录",
    403: "无权执行此操作",
    404: "未找到",
    405: "不支持该请求方法",
    409: "与现有数据冲突",
    413: "请求体过大",
    422: "数据未通过校验",
    429: "请求过于频繁，请稍后再试",
    500: "服务器内部错误",
}


def problem(
    request: Request[Any, Any, Any] | None,
    status: int,
    detail: str,
    detail_en: str,
    errors: list[FieldError] | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://sanzi.example/problems/{code or status}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "detail_en": detail_en,
    }
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message, "message_en": e.message_en} for e in errors]
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_of(key: str | None) -> str:
    """A field path as the API names it everywhere: ``lines[0].credit`` (Litestar says ``lines.0.credit``)."""
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key) if key else "body"


def _bilingual(name: str, message: str) -> tuple[str, str]:
    """Split our validators' "中文 / English" messages; give pydantic's English ones a Chinese lead."""
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    zh, sep, en = message.partition(" / ")
    if sep and any("\u4e00" <= ch <= "\u9fff" for ch in zh):
        return zh, en
    if any("\u4e00" <= ch <= "\u9fff" for ch in message):
        return message, message
    return f"字段 {name} 的值无效：{message}", message


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors: list[FieldError] = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            name = _field_of(item.get("key"))
            errors.append(FieldError(name, *_bilingual(name, str(item.get("message", "invalid value")))))
    first = errors[0] if errors else None
    return problem(
        request,
        400,
        first.message if first else "请求数据无效",
        first.message_en if first else str(exc.detail),
        errors=errors,
        code="validation",
    )


def domain_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    errors = [FieldError(exc.field, exc.message, exc.message_en)] if exc.field else None
    return problem(request, exc.status_code, exc.message, exc.message_en, errors=errors, code=exc.code, **exc.extra)


def http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    detail_en = exc.detail if exc.detail and exc.detail != _TITLES.get(status) else _TITLES.get(status, "Error")
    headers = dict(exc.headers or {})
    zh = _DEFAULT_ZH.get(status, "请求失败")
    if isinstance(exc, NotAuthorizedException):
        zh = "请先登录或提供有效的访问令牌"
    elif isinstance(exc, PermissionDeniedException):
        zh = "您的角色无权执行此操作"
    return problem(request, status, zh, str(detail_en), headers=headers or None)


def not_found_handler(request: Request[Any, Any, Any], exc: RepositoryNotFoundError) -> Response[dict[str, Any]]:
    return problem(request, 404, "未找到", "not found", code="not_found")


def internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request.logger.exception("unhandled error", exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, _DEFAULT_ZH[500], "internal server error")


exception_handlers = {
    ValidationException: validation_handler,
    DomainError: domain_handler,
    RepositoryNotFoundError: not_found_handler,
    HTTPException: http_handler,
    HTTP_500_INTERNAL_SERVER_ERROR: internal_handler,
}

__all__ = ["MediaType", "DomainError", "NotFound", "Forbidden", "Conflict", "FieldError", "problem"]
