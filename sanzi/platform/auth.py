"""Authentication and access: argon2 passwords, bearer tokens for /api, cookie sessions for pages,
a fail-closed guard that reads every route's declared access, and login throttling."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import ASGIApp, Empty, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.platform.models import ApiToken, Role, User
from sanzi.platform.problems import DomainError

if TYPE_CHECKING:
    from redis.asyncio import Redis

API_PREFIX = "/api"
SESSION_USER_KEY = "uid"
SESSION_EPOCH_KEY = "epoch"

# ---- who may call a route -------------------------------------------------------------------------------
#
# Every route handler states its access in ``opt["access"]``: "public", "authenticated", or a tuple of roles.
# ``access_guard`` is installed on the whole app and refuses any handler that does not say (fail closed).

PUBLIC = {"access": "public"}
AUTHENTICATED = {"access": "authenticated"}


def roles(*allowed: Role) -> dict[str, Any]:
    """``opt`` for a route callable only by these roles."""
    return {"access": tuple(role.value for role in allowed)}


def declared_access(handler: BaseRouteHandler) -> str | tuple[str, ...] | None:
    return handler.opt.get("access")


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Refuse a caller the route does not admit. Async, because Litestar runs a sync guard in a worker thread:
    a thread hop on every request for a few dictionary look-ups."""
    access = declared_access(handler)
    if access is None:
        if handler.opt.get("litestar_openapi") or connection.scope["path"].startswith("/schema"):
            return
        raise PermissionDeniedException("route declares no access")
    if access == "public":
        return
    user: User | None = connection.scope.get("user")
    if user is None:
        raise NotAuthorizedException("authentication required")
    if access == "authenticated":
        return
    if user.role not in access:
        raise PermissionDeniedException(f"role {user.role} may not call this route")


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> User | None:
    return connection.scope.get("user")


# ---- passwords and tokens -------------------------------------------------------------------------------


MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


def check_password_policy(password: str, username: str | None = None, field: str = "password") -> None:
    """The minimum policy: at least 8 characters, not all digits, not the username; a 422 names the field."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError(
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
            field=field,
        )
    if password.isdigit():
        raise DomainError("密码不能全部是数字", "a password must not consist of digits only", field=field)
    if username and password.lower() == username.lower():
        raise DomainError("密码不能与用户名相同", "a password must differ from the username", field=field)


class Passwords:
    """argon2id hashing; cheaper parameters only in the test environment."""

    def __init__(self, cheap: bool = False) -> None:
        self._hasher = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) if cheap else PasswordHasher()
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nobody(self, password: str) -> bool:
        """Spend the time of a real verification for an unknown username, so timing does not tell it apart."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "sz_" + secrets.token_urlsafe(32)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def issue_token(session: Any, user: User, days: int) -> str:
    """A new bearer token for the user, valid for ``days``; only its SHA-256 is stored."""
    token = new_token()
    now = utcnow()
    session.add(
        ApiToken(user_id=user.id, token_hash=hash_token(token), created_at=now, expires_at=now + timedelta(days=days))
    )
    await session.flush()
    return token


class TokenCache:
    """Bearer tokens this process looked up recently: token hash → (user, trusted until).

    Saves the database lookup on every API request (the bid path's first query). A revocation, password
    reset, deactivation or change of role or area made in this process forgets the user's tokens at once;
    one made through another worker takes effect here within the cache's seconds.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[str, tuple[User, float]] = {}

    def get(self, token_hash: str) -> User | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            self._entries.pop(token_hash, None)
            return None
        return entry[0]

    def put(self, token_hash: str, user: User, seconds: float, expires_at: datetime) -> None:
        """Trust the token for ``seconds``, never past its own expiry."""
        seconds = min(seconds, (_aware(expires_at) - utcnow()).total_seconds())
        if seconds <= 0:
            return
        now = self.clock()
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {key: entry for key, entry in self._entries.items() if entry[1] > now}
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
        self._entries[token_hash] = (user, now + seconds)

    def forget_user(self, user_id: int) -> None:
        self._entries = {key: entry for key, entry in self._entries.items() if entry[0].id != user_id}

    def clear(self) -> None:
        self._entries.clear()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: one per process: the middleware fills it, revocations and account changes empty it for their user
token_cache = TokenCache()


async def revoke_tokens(
    session: Any, user_id: int, token_hash: str | None = None, keep: str | None = None
) -> int:
    """Revoke one token of the user (by its hash) or all of them but ``keep``; returns how many."""
    token_cache.forget_user(user_id)
    query = select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if token_hash is not None:
        query = query.where(ApiToken.token_hash == token_hash)
    if keep is not None:
        query = query.where(ApiToken.token_hash != keep)
    rows = list(await session.scalars(query))
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    await session.flush()
    return len(rows)


def current_token_hash(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The SHA-256 of the bearer token the current /api request was authenticated with."""
    return connection.scope.get("auth")  # type: ignore[return-value]


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The peer address as the ASGI server reports it (a proxy must be configured to pass the real one)."""
    client = connection.client
    return client.host if client and client.host else "unknown"


def start_session(
    connection: ASGIConnection[Any, Any, Any, Any], user: User, cookie_key: str = "session"
) -> None:
    """Log the user in on a fresh session id, so an id planted before login never carries the login."""
    # the session middleware takes the id from the parsed cookies (one dict shared through the scope state)
    # or from the state's session_id; without either it generates a new id when it stores the session
    connection.cookies.pop(cookie_key, None)
    ScopeState.from_scope(connection.scope).session_id = Empty
    connection.set_session({SESSION_USER_KEY: user.id, SESSION_EPOCH_KEY: user.session_epoch})


def end_sessions(user: User) -> None:
    """Make every page session of the user stale (they carry the epoch of their login)."""
    user.session_epoch = (user.session_epoch or 0) + 1


# ---- login ----------------------------------------------------------------------------------------------


class Throttled(DomainError):
    """A 429 refusal that carries the seconds to wait (sent as Retry-After)."""

    def __init__(self, what_zh: str, what_en: str, code: str, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            f"{what_zh}，请 {minutes} 分钟后再试",
            f"{what_en}; try again in {retry_after} seconds",
            status_code=429,
            code=code,
            extra={"retry_after": retry_after},
        )
        self.retry_after = retry_after


class LoginThrottled(Throttled):
    """Too many failed logins for this account or from this address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("登录失败次数过多", "too many failed logins", "login_throttled", retry_after)


class SignupThrottled(Throttled):
    """Too many bidder sign-ups from this address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "该网络地址注册次数过多", "too many sign-ups from this address", "signup_throttled", retry_after
        )


class BadCredentials(DomainError):
    """The same refusal whether or not the username exists."""

    def __init__(self) -> None:
        super().__init__("用户名或密码错误", "wrong username or password", status_code=401, code="bad_credentials")


async def authenticate(
    session: Any, passwords: Passwords, throttle: LoginThrottle, username: str, password: str, address: str
) -> User:
    """The active user with this username and password, counting failures per account and per address.

    Refuses with :class:`LoginThrottled` before checking anything once either counter is over its limit,
    and with :class:`BadCredentials` for an unknown user, a wrong password or a deactivated account.
    """
    username = username.strip().lower()
    wait = await throttle.retry_after(username, address)
    if wait is not None:
        raise LoginThrottled(wait)
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        passwords.verify_nobody(password)
    if user is None or not passwords.verify(user.password_hash, password) or not user.is_active:
        await throttle.failed(username, address)
        raise BadCredentials()
    await throttle.succeeded(username)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    user.last_login_at = utcnow()
    await session.flush()
    return user


# ---- middleware -----------------------------------------------------------------------------------------


class AuthenticationMiddleware(ASGIMiddleware):
    """Puts the caller (or None) in ``scope["user"]``: a bearer token on /api, the session cookie elsewhere."""

    scopes = ("http", "websocket")  # type: ignore[assignment]

    def __init__(self, session_maker: async_sessionmaker[Any], token_cache_seconds: float = 0.0) -> None:
        self.session_maker = session_maker
        self.token_cache_seconds = token_cache_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None  # type: ignore[typeddict-unknown-key]
        path: str = scope["path"]
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            header = _header(scope, b"authorization")
            if header:
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise NotAuthorizedException("expected 'Authorization: Bearer <token>'")
                token_hash = hash_token(token.strip())
                user = token_cache.get(token_hash) if self.token_cache_seconds > 0 else None
                if user is None:
                    user = await self._user_for_token(token_hash)
                if user is None:
                    raise NotAuthorizedException("invalid or expired token")
                scope["user"] = user  # type: ignore[typeddict-unknown-key]
                scope["auth"] = token_hash  # type: ignore[typeddict-unknown-key]
        else:
            session = scope.get("session") or {}
            if isinstance(session, dict) and session.get(SESSION_USER_KEY) is not None:
                user = await self._user_by_id(int(session[SESSION_USER_KEY]))
                # a session older than the last password change or deactivation (or with no epoch) is stale
                if user is not None and session.get(SESSION_EPOCH_KEY) == user.session_epoch:
                    scope["user"] = user  # type: ignore[typeddict-unknown-key]
        await next_app(scope, receive, send)

    async def _user_for_token(self, token_hash: str) -> User | None:
        async with self.session_maker() as session:
            row = await session.scalar(
                select(ApiToken).where(
                    ApiToken.token_hash == token_hash,
                    ApiToken.revoked_at.is_(None),
                    ApiToken.expires_at > utcnow(),
                )
            )
            if row is None or not row.user.is_active:
                return None
            session.expunge(row.user)
            if self.token_cache_seconds > 0:
                token_cache.put(token_hash, row.user, self.token_cache_seconds, row.expires_at)
            return row.user

    async def _user_by_id(self, user_id: int) -> User | None:
        async with self.session_maker() as session:
            user = await session.get(User, user_id)
            if user is None or not user.is_active:
                return None
            session.expunge(user)
            return user


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


# ---- throttling -----------------------------------------------------------------------------------------


class WindowCounters:
    """Counters that reset a fixed window after their first hit.

    With Redis the counters are shared by every worker (INCR + EXPIRE in one transaction); without it they
    live in this process, which is right for the single-process laptop set-up.
    """

    def __init__(self, window_seconds: int, redis: Redis | None = None):
        self.window = window_seconds
        self.redis = redis
        self._local: dict[str, tuple[int, float]] = {}
        self._lock = asyncio.Lock()

    async def _get(self, key: str) -> tuple[int, int]:
        """The count under the key and the seconds left in its window."""
        if self.redis is not None:
            async with self.redis.pipeline(transaction=True) as pipe:
                value, ttl = await pipe.get(key).ttl(key).execute()
            return int(value or 0), int(ttl if ttl and ttl > 0 else self.window)
        count, expires = self._local.get(key, (0, 0.0))
        now = time.monotonic()
        return (0, self.window) if expires <= now else (count, int(expires - now))

    async def _incr(self, key: str) -> tuple[int, int]:
        """Count one more hit; returns the new count and the seconds left in its window."""
        if self.redis is not None:
            async with self.redis.pipeline(transaction=True) as pipe:
                count, _, ttl = await pipe.incr(key).expire(key, self.window, nx=True).ttl(key).execute()
            return int(count), int(ttl if ttl and ttl > 0 else self.window)
        async with self._lock:
            now = time.monotonic()
            count, expires = self._local.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + self.window
            self._local[key] = (count + 1, expires)
            return count + 1, max(int(expires - now), 1)


class LoginThrottle(WindowCounters):
    """Counts failed logins per account and per client address."""

    def __init__(self, per_account: int, per_address: int, window_seconds: int, redis: Redis | None = None):
        super().__init__(window_seconds, redis)
        self.limits = {"account": per_account, "address": per_address}

    def _keys(self, username: str, address: str) -> Iterable[tuple[str, str]]:
        return (("account", f"sanzi:login:acct:{username.lower()}"), ("address", f"sanzi:login:addr:{address}"))

    async def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait if either counter is over its limit, else None."""
        for kind, key in self._keys(username, address):
            count, ttl = await self._get(key)
            if count >= self.limits[kind]:
                return max(ttl, 1)
        return None

    async def failed(self, username: str, address: str) -> None:
        for _, key in self._keys(username, address):
            await self._incr(key)

    async def succeeded(self, username: str) -> None:
        key = f"sanzi:login:acct:{username.lower()}"
        if self.redis is not None:
            await self.redis.delete(key)
        else:
            self._local.pop(key, None)


#: bidder self-registration: attempts per client address and window (valid or not, so that the
#: "already registered" answers cannot be used to probe usernames and identity numbers at speed)
SIGNUPS_PER_ADDRESS = 10
SIGNUP_WINDOW_SECONDS = 3600


class SignupThrottle(WindowCounters):
    """Counts bidder sign-up attempts per client address."""

    def __init__(
        self,
        per_address: int = SIGNUPS_PER_ADDRESS,
        window_seconds: int = SIGNUP_WINDOW_SECONDS,
        redis: Redis | None = None,
    ):
        super().__init__(window_seconds, redis)
        self.per_address = per_address

    @staticmethod
    def key(address: str) -> str:
        return f"sanzi:signup:addr:{address}"

    async def admit(self, address: str) -> None:
        """Count this attempt; refuse with :class:`SignupThrottled` once the address is over its limit.

        The counter is incremented before the check, so concurrent attempts cannot all slip under the limit.
        """
        count, ttl = await self._incr(self.key(address))
        if count > self.per_address:
            raise SignupThrottled(ttl)


class VisitorSessionBackend(ServerSideSessionBackend):
    """Litestar's server-side sessions, except that an empty session is never stored: the stock backend writes
    an empty session (a file, or a Redis key) for every anonymous page view, which costs a write per request
    and leaves a key behind per visitor. A session that empties (log-out) is deleted with its cookie."""

    async def store_in_message(self, scope_session: Any, message: Any, connection: Any) -> None:
        if scope_session is Empty or not scope_session:
            if self.config.key not in connection.cookies:
                return  # nothing stored, nothing to forget: no write, no cookie
            scope_session = Empty
        await super().store_in_message(scope_session, message, connection)


@dataclass
class VisitorSessionConfig(ServerSideSessionConfig):
    """Server-side sessions that store nothing for anonymous visitors (see :class:`VisitorSessionBackend`)."""

    _backend_class = VisitorSessionBackend
