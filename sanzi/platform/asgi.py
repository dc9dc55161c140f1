"""ASGI entry point for servers (`uvicorn sanzi.platform.asgi:create_app --factory`) and the CLI."""

from sanzi.platform.app import create_app

__all__ = ["create_app"]
