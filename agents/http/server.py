"""gunicorn for the HTTP agent: one gthread worker; the agent is built in the worker when gunicorn loads the
app (after the fork, so no connection or thread crosses it) and stopped when the worker exits."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from agents.http.app import create_worker_app, stop_worker_agent
from agents.http.settings import Settings


def _worker_exit(server: Any, worker: Any) -> None:
    stop_worker_agent()


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self._settings
        self.cfg.set("bind", f"{s.common.bind_host}:{s.http_port}")
        self.cfg.set("workers", 1)
        self.cfg.set("threads", s.threads)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("accesslog", None)
        self.cfg.set("graceful_timeout", 15)
        # A request may wait up to the publish timeout for Kafka; the worker must not be killed meanwhile.
        self.cfg.set("timeout", max(60, int(s.publish_timeout_s * 2) + 30))
        self.cfg.set("keepalive", 30)
        self.cfg.set("worker_exit", _worker_exit)
        # gunicorn's control socket has one default path per user, shared by every gunicorn on the machine.
        self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        return create_worker_app(self._settings)


def serve(settings: Settings) -> None:
    _Server(settings).run()
