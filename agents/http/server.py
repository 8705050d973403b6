"""gunicorn for the HTTP agent: one gthread worker; the agent is built in the worker when gunicorn loads the
app (after the fork, so no connection or thread crosses it) and stopped when the worker exits.

Two listeners, each its own process (gunicorn's TLS settings apply to every socket of a server):

- ``plain`` (``HTTP_AGENT_HTTP_PORT``): Basic credentials only; what the gateway routes to.
- ``tls`` (``HTTP_AGENT_HTTPS_PORT``): devices connect directly. A client certificate is asked for but not
  required: one that the CA did not sign fails the handshake; a verified one is the device's identity (its CN);
  without one, Basic credentials are checked as on the plain listener, now under TLS. TLS 1.2 at least."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from agents.http.app import create_worker_app, stop_worker_agent
from agents.http.settings import Settings


def _worker_exit(server: Any, worker: Any) -> None:
    stop_worker_agent()


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, tls: bool) -> None:
        self._settings = settings
        self._tls = tls
        super().__init__()

    def load_config(self) -> None:
        s = self._settings
        port = s.https_port if self._tls else s.http_port
        self.cfg.set("bind", f"{s.common.bind_host}:{port}")
        if self._tls:
            self.cfg.set("certfile", s.tls_cert)
            self.cfg.set("keyfile", s.tls_key)
            self.cfg.set("ca_certs", s.tls_ca)
            self.cfg.set("cert_reqs", ssl.CERT_OPTIONAL)
            self.cfg.set("ssl_context", _ssl_context_factory(s.tls_ca_dir))
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
        return create_worker_app(self._settings, tls=self._tls)


def _ssl_context_factory(ca_dir: str) -> Any:
    """gunicorn's ``ssl_context`` hook: TLS 1.2 at least, and the tenants' CAs (a hashed directory OpenSSL
    searches at each handshake) besides ``ca_certs``."""

    def ssl_context(config: Any, default_factory: Any) -> ssl.SSLContext:
        context: ssl.SSLContext = default_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if ca_dir:
            Path(ca_dir).mkdir(parents=True, exist_ok=True)
            context.load_verify_locations(capath=ca_dir)
        return context

    return ssl_context


def serve(settings: Settings, tls: bool = False) -> None:
    if tls:
        settings.check_tls()
    _Server(settings, tls).run()
