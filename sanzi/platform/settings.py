"""Settings read from environment variables (pydantic-settings), with development defaults under var/."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AnyHttpUrl, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VAR_DIR = PROJECT_ROOT / "var"


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{VAR_DIR / 'sanzi.db'}"


class Settings(BaseSettings):
    """Everything an operator can set; names are the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "production", "test"] = Field(default="development", alias="SANZI_ENV")
    database_url: str = Field(default_factory=_default_database_url, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    secret_key: str | None = Field(default=None, alias="SECRET_KEY")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    time_zone: str = Field(default="Asia/Shanghai", alias="TIME_ZONE")
    host: str = Field(default="127.0.0.1", alias="HOST")
    port: int = Field(default=8000, alias="PORT")
    var_dir: Path = Field(default=VAR_DIR, alias="SANZI_VAR_DIR")
    echo_sql: bool = Field(default=False, alias="SANZI_ECHO_SQL")
    #: PostgreSQL: a pooled connection idle this long is pinged before use, and replaced if the ping fails (0:
    #: before every use)
    database_ping_after_idle_seconds: float = Field(default=10.0, ge=0, alias="SANZI_DB_PING_AFTER_IDLE")
    #: login throttling: failures allowed per window, per account and per client address
    login_failures_per_account: int = Field(default=5, alias="SANZI_LOGIN_FAILURES_PER_ACCOUNT")
    login_failures_per_address: int = Field(default=20, alias="SANZI_LOGIN_FAILURES_PER_ADDRESS")
    login_window_seconds: int = Field(default=900, alias="SANZI_LOGIN_WINDOW_SECONDS")
    api_token_days: int = Field(default=30, alias="SANZI_API_TOKEN_DAYS")
    #: how long a worker trusts a bearer token it looked up (0: look it up on every request); a revocation
    #: made through another worker takes effect within this time
    token_cache_seconds: float = Field(default=5.0, ge=0, le=60, alias="SANZI_TOKEN_CACHE_SECONDS")
    #: the in-app scheduler that opens and closes auctions (tests turn it off and drive the clock themselves)
    scheduler_enabled: bool = Field(default=True, alias="SANZI_SCHEDULER")
    scheduler_interval_seconds: float = Field(default=1.0, alias="SANZI_SCHEDULER_INTERVAL")
    #: bids a bidder may place per second on the whole platform
    bid_rate_per_second: int = Field(default=5, alias="SANZI_BID_RATE_PER_SECOND")
    #: where committed domain events are evaluated by the warning rules: "auto" appends them to a Redis Stream
    #: for `sanzi warnings worker` when REDIS_URL is set, else evaluates them in a background task of the app;
    #: "inprocess" always evaluates in the app (the pre-stream layout, kept for diagnostics)
    warnings_evaluation: Literal["auto", "inprocess"] = Field(default="auto", alias="SANZI_WARNINGS_EVALUATION")
    #: the Redis Stream of committed events the warnings worker consumes
    warnings_stream: str = Field(default="sanzi:warnings:events", alias="SANZI_WARNINGS_STREAM")
    #: whether `sanzi run` starts `sanzi warnings worker` beside the server when REDIS_URL is set
    warnings_worker: bool = Field(default=True, alias="SANZI_WARNINGS_WORKER")
    #: the platform's public address (e.g. https://sanzi.example.gov.cn), written into printed documents: a
    #: certificate's QR code must lead villagers to the public site, not to the address an official reached
    #: the server by (an intranet name, or the app server behind a proxy); unset, the request's own address
    public_url: AnyHttpUrl | None = Field(default=None, alias="SANZI_PUBLIC_URL")

    @model_validator(mode="after")
    def _require_secret_in_production(self) -> "Settings":
        if self.environment == "production" and not self.secret_key:
            raise ValueError("SECRET_KEY must be set when SANZI_ENV=production")
        if self.database_url.startswith("postgresql://"):
            self.database_url = "postgresql+asyncpg://" + self.database_url.removeprefix("postgresql://")
        return self

    def public_base(self, request_base: str) -> str:
        """The base of links printed in documents: the public address when configured, else the request's."""
        return str(self.public_url or request_base).rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def resolved_secret_key(self) -> str:
        """The configured key, or in development one generated once and kept in var/secret_key."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


def local_today() -> date:
    """Today in the villages' calendar (the configured time zone, Asia/Shanghai by default), not the server's."""
    return datetime.now(get_settings().zone).date()


@lru_cache
def get_settings() -> Settings:
    return Settings()
