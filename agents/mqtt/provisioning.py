"""Per-device MQTT credentials (credentials mode), kept by Mosquitto's dynamic security plugin.

The plugin stores each device's password hashed (salted PBKDF2-SHA512) in its state file; the agent never
stores a password. Commands travel as JSON on ``$CONTROL/dynamic-security/v1`` over a connection of the agent
to the device listener, logged in as the plugin's administrator; answers come back on ``.../response`` and
are matched by ``correlationData``.

- A device's MQTT username is its identity ``<tenant>:<device-id>``; its password is generated here
  (:func:`new_password`), set with ``createClient`` (or ``setClientPassword`` when the device already has one:
  the old password stops working and live sessions of the device are ended), and shown once to the caller.
- Ending a device's sessions: ``disableClient`` makes the broker end every live session whose username is the
  device's identity, on every listener (password logins and mutual-TLS logins, whose username is the
  certificate CN), but only for a client the plugin knows. So the client is first created (``createClient``
  with a random password nobody learns; "already exists" is fine), then disabled.
- A removed device: its sessions are ended that way, then ``deleteClient`` (its password is gone: it cannot
  log in with one again). A disabled device (:meth:`Provisioner.disable`) keeps a disabled client: password
  logins are refused until it is enabled again. Neither stops a certificate login: that is the CRL's job
  (agents/mqtt/revocation.py), done before the sessions are ended.

The plugin lives on one listener per broker: the device listener in credentials mode, the internal listener in
unsecured mode (only the administrator is known there, only to end sessions).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from typing import Any

from gmqtt import Client

from agents.mqtt.broker import connect_with_retry
from ondas.errors import Unavailable

log = logging.getLogger("agents.mqtt.provisioning")

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
NOT_FOUND = "Client not found"
EXISTS = "Client already exists"


def new_password() -> str:
    """A random device password (192 bits)."""
    return secrets.token_urlsafe(24)


class DynsecError(Exception):
    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


class Dynsec:
    """A client of the dynamic security plugin (one connection, commands may be sent concurrently)."""

    def __init__(self, *, host: str, port: int, username: str, password: str, client_id: str) -> None:
        self._host = host
        self._port = port
        self._client = Client(client_id, clean_session=True)
        self._client.set_auth_credentials(username, password)
        self._client.reconnect_delay = 1
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._ready = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def start(self, timeout: float = 60.0) -> None:
        await connect_with_retry(self._client, self._host, self._port, timeout)
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        await self._client.disconnect()

    def _on_connect(self, client: Client, flags: int, rc: int, properties: dict[str, Any]) -> None:
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client: Client, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        if all(code < 0x80 for code in granted):
            self._ready.set()
        else:
            log.error("dynamic security responses refused", extra={"granted": list(granted)})

    def _on_disconnect(self, client: Client, packet: Any, exc: Any = None) -> None:
        self._ready.clear()

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynamic security response", extra={"topic": topic})
            return 0
        for response in responses if isinstance(responses, list) else ():
            fut = self._waiting.pop(str(response.get("correlationData", "")), None)
            if fut is not None and not fut.done():
                fut.set_result(response)
        return 0

    async def run(self, commands: list[dict[str, Any]], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send commands in one message; the plugin's answer to each (``error`` set when it failed)."""
        if not self.connected:
            raise Unavailable("not connected to the dynamic security plugin")
        loop = asyncio.get_running_loop()
        futures = []
        for command in commands:
            correlation = uuid.uuid4().hex
            command["correlationData"] = correlation
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._waiting[correlation] = fut
            futures.append(fut)
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}).encode(), qos=1)
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
        except TimeoutError as exc:
            raise Unavailable("no answer from the dynamic security plugin in time") from exc
        finally:
            for command in commands:
                self._waiting.pop(command["correlationData"], None)


class Provisioner:
    """Device credentials on top of :class:`Dynsec`."""

    def __init__(self, dynsec: Dynsec) -> None:
        self._dynsec = dynsec

    @property
    def ready(self) -> bool:
        return self._dynsec.connected

    async def set_password(self, username: str, password: str) -> None:
        """Create the device's MQTT client, or give it a new password (ending its live sessions)."""
        [created] = await self._dynsec.run([{"command": "createClient", "username": username, "password": password}])
        error = created.get("error")
        if error == EXISTS:
            answers = await self._dynsec.run(
                [
                    {"command": "setClientPassword", "username": username, "password": password},
                    {"command": "enableClient", "username": username},
                ]
            )
            _raise_first(answers)
            # A new password must end the sessions opened with the old one.
            _raise_first(await self._dynsec.run([{"command": "disableClient", "username": username}]))
            _raise_first(await self._dynsec.run([{"command": "enableClient", "username": username}]))
        elif error:
            raise DynsecError("createClient", str(error))
        log.info("device credentials set", extra={"username": username})

    async def disable(self, username: str) -> None:
        """End every live session of ``username`` (any listener, any login) and refuse its password logins."""
        answers = await self._dynsec.run(_end_sessions(username))
        _raise_first([a for a in answers if a.get("error") != EXISTS])
        log.info("device disabled, sessions ended", extra={"username": username})

    async def enable(self, username: str) -> None:
        """Let a disabled device log in again (with its password, if it has one)."""
        [answer] = await self._dynsec.run([{"command": "enableClient", "username": username}])
        _raise_first([answer] if answer.get("error") != NOT_FOUND else [])
        log.info("device enabled", extra={"username": username})

    async def remove(self, username: str) -> None:
        """End every live session of ``username`` (any listener, any login) and forget its password."""
        answers = await self._dynsec.run([*_end_sessions(username), {"command": "deleteClient", "username": username}])
        _raise_first([a for a in answers if a.get("error") not in (EXISTS, NOT_FOUND)])
        log.info("device credentials removed, sessions ended", extra={"username": username})

    async def end_sessions(self, username: str) -> None:
        """End every live session of ``username`` (a revoked certificate's) and leave its login as it was: a
        device password stays usable, a disabled device stays disabled, a client made only for this goes."""
        [answer] = await self._dynsec.run([{"command": "getClient", "username": username}])
        if answer.get("error") == NOT_FOUND:
            answers = await self._dynsec.run(
                [*_end_sessions(username), {"command": "deleteClient", "username": username}]
            )
            _raise_first([a for a in answers if a.get("error") not in (EXISTS, NOT_FOUND)])
        else:
            _raise_first([answer])
            client = (answer.get("data") or {}).get("client") or {}
            commands: list[dict[str, Any]] = [{"command": "disableClient", "username": username}]
            if not client.get("disabled"):
                commands.append({"command": "enableClient", "username": username})
            _raise_first(await self._dynsec.run(commands))
        log.info("sessions ended", extra={"username": username})

    async def exists(self, username: str) -> bool:
        [answer] = await self._dynsec.run([{"command": "getClient", "username": username}])
        if answer.get("error") == NOT_FOUND:
            return False
        _raise_first([answer])
        return True


def _end_sessions(username: str) -> list[dict[str, Any]]:
    """Commands that end every live session of ``username``: disableClient kicks only a client the plugin
    knows, so one is created first when there is none (with a password nobody learns)."""
    return [
        {"command": "createClient", "username": username, "password": new_password()},
        {"command": "disableClient", "username": username},
    ]


def _raise_first(answers: list[dict[str, Any]]) -> None:
    for answer in answers:
        if answer.get("error"):
            raise DynsecError(str(answer.get("command")), str(answer["error"]))
