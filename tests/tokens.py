"""Test tokens: an RS256 key pair written to a folder, and tokens signed with it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt

from ondasctl.pki import ensure_jwt_keys


class TokenMaker:
    def __init__(self, keys_dir: Path) -> None:
        self.private_file, self.public_file = ensure_jwt_keys(keys_dir)
        self._private = self.private_file.read_text()

    def token(self, tenant: str, username: str = "admin", ttl: int = 600, **claims: object) -> str:
        now = int(time.time())
        body = {
            "service": tenant,
            "username": username,
            "profile": "admin",
            "groups": [1],
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(body, self._private, algorithm="RS256")

    def headers(self, tenant: str, username: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, username)}"}
