"""The application factory: one init plugin wires settings, database, auth, sessions, templates and routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from click import Group
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.config.app import AppConfig
from litestar.config.csrf import CSRFConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins import CLIPluginProtocol, InitPluginProtocol
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sanzi.platform.auth import (
    VisitorSessionConfig,
    API_PREFIX,
    AuthenticationMiddleware,
    LoginThrottle,
    Passwords,
    SignupThrottle,
    access_guard,
)
from sanzi.platform.database import create_engine, sqlalchemy_config
from sanzi.platform.pages import configure_templates
from sanzi.platform.pages import exception_handlers as page_exception_handlers
from sanzi.platform.settings import PROJECT_ROOT, Settings, get_settings

TEMPLATES_DIR = PROJECT_ROOT / "templates"


class SanziPlugin(InitPluginProtocol, CLIPluginProtocol):
    """Configures the app (as litestar-fullstack's ApplicationCore does) and adds the project's CLI groups."""

    def __init__(
        self,
        settings: Settings | None = None,
        engine: AsyncEngine | None = None,
        session_maker: async_sessionmaker[Any] | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._session_maker = session_maker

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def on_cli_init(self, cli: Group) -> None:
        from sanzi.platform.cli import register_commands

        register_commands(cli)
        from sanzi.warnings.cli import wrap_run_command

        wrap_run_command(cli)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        from sanzi.auction.controllers import controllers as auction_controllers
        from sanzi.auction.documents import controllers as auction_documents
        from sanzi.auction.scheduler import scheduler_lifespan
        from sanzi.interchange.controllers import controllers as interchange_controllers
        from sanzi.ledger.controllers import controllers as ledger_controllers
        from sanzi.warnings.controllers import controllers as warnings_controllers
        from sanzi.warnings.documents import controllers as warnings_documents
        from sanzi.warnings.engine import engine_lifespan
        from sanzi.platform.controllers import controllers as platform_controllers

        settings = self.settings
        engine = self._engine or create_engine(settings)
        db_config = sqlalchemy_config(settings, engine=engine, session_maker=self._session_maker)
        auth_session_maker = self._session_maker or async_sessionmaker(engine, expire_on_commit=False)
        secret = settings.resolved_secret_key()

        redis = None
        channels_backend: Any = MemoryChannelsBackend(history=0)
        if settings.redis_url:
            from redis.asyncio import Redis

            redis = Redis.from_url(settings.redis_url)
            app_config.stores = {"sessions": RedisStore(redis, namespace="sanzi:sessions")}
            # live auction events reach the watchers of every worker through Redis pub/sub
            channels_backend = RedisChannelsPubSubBackend(redis=Redis.from_url(settings.redis_url))
        elif settings.environment == "test":
            app_config.stores = {"sessions": MemoryStore()}
        else:
            app_config.stores = {"sessions": FileStore(settings.var_dir / "sessions", create_directories=True)}

        app_config.state = State(
            {
                "settings": settings,
                "engine": engine,
                "redis": redis,
                "passwords": Passwords(cheap=settings.environment == "test"),
                "login_throttle": LoginThrottle(
                    settings.login_failures_per_account,
                    settings.login_failures_per_address,
                    settings.login_window_seconds,
                    redis=redis,
                ),
                "signup_throttle": SignupThrottle(redis=redis),
            }
        )
        app_config.plugins.append(SQLAlchemyPlugin(config=db_config))
        app_config.plugins.append(ChannelsPlugin(backend=channels_backend, arbitrary_channels_allowed=True))
        app_config.route_handlers.extend(
            [*platform_controllers, *ledger_controllers, *auction_controllers, *warnings_controllers,
             *interchange_controllers]
        )
        app_config.route_handlers.extend([*auction_documents, *warnings_documents])
        app_config.lifespan.extend([scheduler_lifespan, engine_lifespan])
        app_config.guards.append(access_guard)
        app_config.middleware.extend(
            [
                VisitorSessionConfig(
                    store="sessions",
                    max_age=12 * 3600,
                    httponly=True,
                    samesite="lax",
                    exclude=[f"^{API_PREFIX}/", "^/static/"],
                ).middleware,
                AuthenticationMiddleware(auth_session_maker, settings.token_cache_seconds),
            ]
        )
        app_config.csrf_config = CSRFConfig(
            secret=secret, exclude=[f"^{API_PREFIX}/", "^/schema"], cookie_httponly=False, cookie_samesite="lax"
        )
        app_config.template_config = TemplateConfig(
            directory=Path(TEMPLATES_DIR),
            engine=JinjaTemplateEngine,
            engine_callback=lambda jinja: configure_templates(
                jinja.engine, reload=settings.environment == "development"
            ),
        )
        app_config.openapi_config = OpenAPIConfig(
            title="sanzi 农村集体三资交易与廉情预警平台",
            version="0.1.0",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        )
        # problem details on /api, readable Chinese pages (or a redirect to log in) everywhere else
        app_config.exception_handlers.update(page_exception_handlers)
        app_config.debug = settings.environment == "development" and settings.log_level == "DEBUG"

        async def close_redis() -> None:
            if redis is not None:
                await redis.aclose()

        app_config.on_shutdown.append(close_redis)
        return app_config


def create_app(
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
    session_maker: async_sessionmaker[Any] | None = None,
) -> Litestar:
    return Litestar(plugins=[SanziPlugin(settings, engine, session_maker)])
