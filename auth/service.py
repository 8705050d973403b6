"""The rules of auth: log in, issue and check tokens, manage tenants."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import jwt

from auth.passwords import hash_password, verify_password
from auth.store_postgres import PostgresAuthStore
from ondas.authn import ALGORITHM, Principal, decode, principal_from_claims
from ondas.contracts import TenancyEvent
from ondas.errors import Invalid, Unauthenticated
from ondas.kafka import Producer, ensure_topics
from ondas.tenant import validate_tenant
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS, TENANCY_TOPIC, tenant_topics

log = logging.getLogger("auth.service")

DEFAULT_TENANT = "admin"
DEFAULT_ADMIN = "admin"
# A fixed hash to compare against when the user does not exist, so timing does not reveal usernames.
_DUMMY_HASH = hash_password("not-a-real-password")


class AuthService:
    def __init__(
        self,
        store: PostgresAuthStore,
        private_key: str,
        public_key: str,
        ttl_seconds: int,
        producer: Producer | None,
        kafka_bootstrap: str | None,
    ) -> None:
        self._store = store
        self._private_key = private_key
        self._public_key = public_key
        self._ttl = ttl_seconds
        self._producer = producer
        self._bootstrap = kafka_bootstrap

    # -- bootstrap ---------------------------------------------------------------------------------------
    def seed(self, admin_password: str) -> None:
        """Create tenant 'admin' and its user 'admin' the first time."""
        self.create_tenant(DEFAULT_TENANT)
        if self._store.user(DEFAULT_ADMIN) is None:
            self._store.create_user(DEFAULT_ADMIN, DEFAULT_TENANT, "admin", hash_password(admin_password), "Admin")
            log.info("seeded user 'admin' of tenant 'admin'")
        admin = self._store.user(DEFAULT_ADMIN)
        if admin is not None and verify_password("admin", admin.password_hash):
            log.warning(
                "user 'admin' still has the default password 'admin': change it (AUTH_ADMIN_PASSWORD before the "
                "first start, or the password API)"
            )

    # -- tenants -----------------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        return self._store.tenants()

    def create_tenant(self, tenant: str) -> bool:
        validate_tenant(tenant)
        created = self._store.create_tenant(tenant)
        if self._bootstrap:
            ensure_topics(self._bootstrap, [TENANCY_TOPIC, *tenant_topics(tenant, [DEVICE_DATA, DEVICE_EVENTS])])
        if created and self._producer is not None:
            event = TenancyEvent(type="CREATE", tenant=tenant)
            self._producer.send_and_wait(TENANCY_TOPIC, event.to_bytes(), key=tenant)
            log.info("tenant created", extra={"tenant": tenant})
        return created

    def create_user(self, username: str, password: str, tenant: str, profile: str) -> dict[str, Any]:
        if not username or not isinstance(username, str):
            raise Invalid("username is required")
        if profile not in ("admin", "user"):
            raise Invalid("profile must be 'admin' or 'user'")
        if len(password) < 8:
            raise Invalid("passwords have at least 8 characters")
        if tenant not in self._store.tenants():
            raise Invalid(f"tenant {tenant!r} does not exist")
        user = self._store.create_user(username, tenant, profile, hash_password(password))
        return {"id": user.id, "username": user.username, "service": user.service, "profile": user.profile}

    # -- tokens ------------------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> str:
        user = self._store.user(username)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            raise Unauthenticated("wrong username or password")
        if not verify_password(password, user.password_hash):
            raise Unauthenticated("wrong username or password")
        now = int(time.time())
        claims = {
            "iss": "ondas-auth",
            "iat": now,
            "exp": now + self._ttl,
            "jti": uuid.uuid4().hex,
            "service": user.service,
            "username": user.username,
            "name": user.name,
            "email": user.email,
            "profile": user.profile,
            "userid": user.id,
            "groups": [1 if user.profile == "admin" else 2],
        }
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM)

    def check(self, token: str) -> Principal:
        """Verify a token's signature and expiry; the caller it names."""
        return principal_from_claims(decode(token, self._public_key))
