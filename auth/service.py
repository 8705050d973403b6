"""The rules of auth: log in, issue, check and revoke tokens; users and passwords; tenants; the policy
administration point (groups, permissions, relations, reports) and the policy decision point.

Every operation on users, groups and permissions takes the caller's tenant explicitly, and the store only ever
looks inside that tenant: a row of another tenant is "not found", exactly like a row that does not exist.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import jwt
from prometheus_client import Counter

from auth import pdp
from auth.events import TenancyRelay
from auth.models import (
    ADMIN_GROUP,
    USER_GROUP,
    Group,
    Permission,
    PermissionSpec,
    User,
    text_field,
    validate_email,
    validate_group_name,
    validate_username,
)
from auth.passwords import UNUSABLE, Hasher, PasswordPolicy
from auth.store_postgres import PostgresAuthStore
from auth.store_redis import GONE, RedisAuthCache
from ondas.authn import ALGORITHM, decode, principal_from_claims
from ondas.errors import Conflict, Forbidden, Invalid, NotFound, OndasError, Unauthenticated
from ondas.service_identity import parse_service_authorization, verify_service_key
from ondas.tenant import validate_tenant

log = logging.getLogger("auth.service")

DEFAULT_ADMIN = "admin"
ISSUER = "ondas-auth"
_NO_USER = "no user found with this id or username"
_NO_GROUP = "no group found with this id or name"
_NO_PERMISSION = "no permission found with this id"


#: Password hashes checked per login that is not throttled, whatever exists (see ``login``): the account's, or a
#: dummy hash when there is no single account to check.
LOGIN_HASH_CHECKS = 1
_WRONG_LOGIN = 'wrong username or password (a username that exists in several tenants needs "service")'

LOGIN_THROTTLED = Counter(
    "auth_login_throttled_total", "Login attempts refused (429) before any password check", ["reason"]
)
LOGIN_FAILURES = Counter("auth_login_failures_total", "Login attempts whose password was checked and refused")
for _reason in ("user", "address"):
    LOGIN_THROTTLED.labels(_reason)


class LoginThrottled(OndasError):
    """Too many failed logins of this user or from this address: 429 with ``Retry-After``."""

    status = 429
    kind = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after} s", retry_after=retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginThrottle:
    """Limits of failed logins, per (tenant, username) and per client address (see ``AuthService.login``)."""

    user_failures: int = 5
    address_failures: int = 20
    window_seconds: int = 900
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 900.0
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = (ip_network("127.0.0.1/32"), ip_network("::1/128"))


def parse_networks(spec: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """``AUTH_TRUSTED_PROXIES``: comma-separated addresses or CIDRs; ``none`` for no proxy at all."""
    if spec.strip().lower() == "none":
        return ()
    try:
        return tuple(ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())
    except ValueError as exc:
        raise Invalid(f"AUTH_TRUSTED_PROXIES: {exc}") from exc


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    real_ip: str | None,
    trusted: tuple[IPv4Network | IPv6Network, ...],
) -> str:
    """The client's address for throttling: the direct peer, unless the peer is a trusted proxy; then the
    right-most address of ``X-Forwarded-For`` that is not a trusted proxy (each proxy appends the address it saw,
    so entries further left are whatever the client sent), or ``X-Real-IP`` when there is no ``X-Forwarded-For``.
    IPv6 addresses count by their /64 (one host usually holds a whole /64)."""

    def parsed(raw: str | None) -> IPv4Address | IPv6Address | None:
        try:
            addr = ip_address((raw or "").strip())
        except ValueError:
            return None
        if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr

    def is_trusted(addr: IPv4Address | IPv6Address) -> bool:
        return any(addr.version == net.version and addr in net for net in trusted)

    addr = parsed(peer)
    if addr is None:
        return "unknown"
    if is_trusted(addr):
        hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
        if hops:
            for hop in reversed(hops):
                hop_addr = parsed(hop)
                if hop_addr is None:
                    break
                addr = hop_addr
                if not is_trusted(addr):
                    break
        else:
            addr = parsed(real_ip) or addr
    if isinstance(addr, IPv6Address):
        return str(ip_network(f"{addr}/64", strict=False))
    return str(addr)


@dataclass(frozen=True)
class Caller:
    """A user whose token passed every check: signature, expiry, revocation, token version."""

    tenant: str
    username: str
    user_id: int
    jti: str
    exp: int
    generation: int | None  # the tenant's policy generation, read before any permission was read


@dataclass(frozen=True)
class AuthConfig:
    private_key: str
    public_key: str
    ttl_seconds: int = 900
    management_tenant: str = "admin"
    service_master_secret: str = ""
    reset_ttl_seconds: int = 1800
    policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Test hook (AUTH_TEST_EXIT_AFTER_TENANT_COMMIT), empty in every real deployment: creating the tenant of this
    # name ends the process right after the commit, before its tenancy event is published.
    test_exit_after_tenant_commit: str = ""


class AuthService:
    def __init__(
        self,
        store: PostgresAuthStore,
        cache: RedisAuthCache,
        config: AuthConfig,
        hasher: Hasher,
        tenancy: TenancyRelay | None,
    ) -> None:
        """``tenancy``: publishes the tenancy events the store queued (None: they stay queued)."""
        self._store = store
        self._cache = cache
        self._cfg = config
        self._hasher = hasher
        self._tenancy = tenancy
        # Verified when a username is unknown, so a login takes as long whether or not the user exists.
        self._dummy_hash = hasher.hash(secrets.token_hex(16))

    @property
    def policy(self) -> PasswordPolicy:
        return self._cfg.policy

    @property
    def reset_ttl_seconds(self) -> int:
        return self._cfg.reset_ttl_seconds

    # -- bootstrap -------------------------------------------------------------------------------------------
    def seed(self, admin_password: str) -> None:
        """Create the management tenant and its user 'admin' the first time; copy revocations to Redis."""
        tenant = self._cfg.management_tenant
        self.create_tenant(tenant)
        for existing in self._store.tenants():
            self._store.create_tenant(existing)  # tenants of the first version get their default profiles
        if self._store.user(tenant, DEFAULT_ADMIN) is None:
            self._store.create_user(tenant, DEFAULT_ADMIN, ADMIN_GROUP, self._hasher.hash(admin_password), "Admin")
            log.info("seeded user 'admin' of the management tenant", extra={"tenant": tenant})
        admin = self._store.user(tenant, DEFAULT_ADMIN)
        if admin is not None and self._hasher.verify("admin", admin.password_hash):
            log.warning(
                "user 'admin' still has the default password 'admin': change it (AUTH_ADMIN_PASSWORD before the "
                "first start, or POST /auth/password/update)"
            )
        self._cache.load_revocations(self._store.active_revocations(), int(time.time()))

    # -- service identity --------------------------------------------------------------------------------------
    def check_service(self, authorization: str | None) -> str:
        """The calling service's name, from ``Authorization: Service <name>:<key>``; 401 otherwise."""
        if not self._cfg.service_master_secret:
            raise Unauthenticated("internal routes are disabled: auth has no AUTH_SERVICE_MASTER_SECRET")
        parsed = parse_service_authorization(authorization)
        if parsed is None:
            raise Unauthenticated("internal routes need a service identity: 'Authorization: Service <name>:<key>'")
        name, key = parsed
        if not verify_service_key(self._cfg.service_master_secret, name, key):
            raise Unauthenticated("unknown service identity")
        return name

    # -- tokens ----------------------------------------------------------------------------------------------
    def login(
        self,
        username: object,
        password: object,
        tenant: object = None,
        peer: str | None = None,
        forwarded_for: str | None = None,
        real_ip: str | None = None,
    ) -> str:
        """A token for ``username`` (in ``tenant`` when given), or 401 (one answer for every wrong case), 429.

        Throttling, before any password hash is computed: per (``tenant`` as sent, or none, and ``username``)
        and per client address (see :func:`client_address`), in Redis. A failure counts in both; from the limit
        on, each failure refuses further attempts for a backoff that doubles; a success resets the user's
        counters (not the address's).

        Without ``tenant``: the management tenant's user of that name if there is one (tenant administrators
        cannot create users there, so no one but the platform's administrators can make it ambiguous); otherwise
        the one user of that name in the only tenant that has one. A name in several tenants (none of them the
        management tenant) is refused exactly like a wrong password, whatever the password.
        """
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            raise Invalid('send {"username": "...", "passwd": "..."} (and optionally "service": "<tenant>")')
        if len(password) > 1024 or len(username) > 200:
            raise Invalid("username or password too long")
        if tenant is not None:
            if not isinstance(tenant, str):
                raise Invalid('"service" must be a tenant name')
            validate_tenant(tenant)
        limits = self._cfg.throttle
        user_key = self._cache.login_user_key(tenant or "", username)
        address_key = self._cache.login_address_key(
            client_address(peer, forwarded_for, real_ip, limits.trusted_proxies)
        )
        now_ms = int(time.time() * 1000)
        reason, wait_ms = self._cache.login_begin(
            user_key, address_key, limits.user_failures, limits.address_failures, now_ms
        )
        if reason is not None:
            LOGIN_THROTTLED.labels(reason).inc()
            raise LoginThrottled(max(1, -(-wait_ms // 1000)))
        finished = False
        try:
            user = self._login_user(username, password, tenant)
            if user is None:
                self._cache.login_failed(
                    user_key,
                    address_key,
                    limits.user_failures,
                    limits.address_failures,
                    int(time.time() * 1000),
                    int(limits.backoff_seconds * 1000),
                    int(limits.backoff_max_seconds * 1000),
                    limits.window_seconds * 1000,
                )
                finished = True
                LOGIN_FAILURES.inc()
                raise Unauthenticated(_WRONG_LOGIN)
            forget = {user_key, self._cache.login_user_key(user.service, username)}
            forget.add(self._cache.login_user_key("", username))
            self._cache.login_done(user_key, address_key, sorted(forget))
            finished = True
        finally:
            if not finished:
                self._cache.login_done(user_key, address_key, [])
        if self._hasher.needs_rehash(user.password_hash):
            self._store.rehash(user.id, user.password_hash, self._hasher.hash(password))
        return self._issue(user)

    def _login_user(self, username: str, password: str, tenant: str | None) -> User | None:
        """The one account the login names whose password matches, or None. Exactly one hash is checked (a dummy
        one when there is no single account), so the time tells nothing about which accounts exist."""
        if tenant is not None:
            target = None if username.isdigit() else self._store.user(tenant, username)  # names, never ids
        else:
            candidates = self._store.users_named(username)
            managed = [u for u in candidates if u.service == self._cfg.management_tenant]
            if managed:
                target = managed[0]
            else:
                target = candidates[0] if len(candidates) == 1 else None
        ok = self._hasher.verify(password, target.password_hash if target is not None else self._dummy_hash)
        return target if ok and target is not None else None

    def _issue(self, user: User) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "iat": now,
            "exp": now + self._cfg.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "service": user.service,
            "username": user.username,
            "name": user.name,
            "email": user.email,
            "profile": user.profile,
            "userid": user.id,
            "groups": [g.id for g in self._store.user_groups(user.id)],
            "tv": user.token_version,
        }
        return jwt.encode(claims, self._cfg.private_key, algorithm=ALGORITHM)

    def authenticate(self, token: str) -> Caller:
        """Check a token completely: signature (RS256 with the platform's key), expiry, auth's own claims,
        revocation of this token, and the user's token version (deleted users and password changes)."""
        claims = decode(token, self._cfg.public_key)
        principal = principal_from_claims(claims)
        jti, user_id, version, exp = claims.get("jti"), claims.get("userid"), claims.get("tv"), claims.get("exp")
        if (
            not isinstance(jti, str)
            or not jti
            or not isinstance(user_id, int)
            or not isinstance(version, int)
            or not isinstance(exp, int)
        ):
            raise Unauthenticated("the token was not issued by auth (claims jti, userid, tv missing); log in again")
        state = self._cache.token_state(principal.tenant, jti, user_id)
        revoked = state.revoked
        if revoked is None:
            revoked = self._store.is_revoked(jti)
            self._cache.remember_revocation(principal.tenant, jti, revoked, exp)
            if not state.revocations_loaded and state.generation is not None:
                self._cache.load_revocations(self._store.active_revocations(), int(time.time()))
        if revoked:
            raise Unauthenticated("the token has been revoked; log in again")
        current = state.version
        if current is None:
            user = self._store.user_by_id(user_id)
            current = user.token_version if user is not None and user.service == principal.tenant else GONE
            self._cache.set_version(principal.tenant, user_id, current, only_if_absent=True)
        if current == GONE:
            raise Unauthenticated("the token's user no longer exists")
        if current != version:
            raise Unauthenticated(
                "the token has been revoked (password or profile change, or revocation); log in again"
            )
        return Caller(principal.tenant, principal.username, user_id, jti, exp, state.generation)

    def revoke(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """Revoke the caller's own token (empty body), one token (``{"jwt"}``) or every token of a user
        (``{"username"}``). Others' tokens only for an administrator of the same tenant."""
        unknown = set(body) - {"jwt", "username"}
        if unknown or len(body) > 1:
            raise Invalid('send {} (this token), {"jwt": "<token>"} or {"username": "<user>"}')
        if not body:
            self._revoke_jti(caller.jti, caller.tenant, caller.exp)
            return {"message": "token revoked", "jti": caller.jti}
        if "jwt" in body:
            token = body["jwt"]
            if not isinstance(token, str) or not token:
                raise Invalid('"jwt" must be a token')
            try:
                claims = decode(token, self._cfg.public_key)
            except Unauthenticated as exc:
                raise Invalid(f"that token cannot be revoked: {exc.message}") from exc
            jti, exp = claims.get("jti"), claims.get("exp")
            if claims.get("service") != caller.tenant or not isinstance(jti, str) or not isinstance(exp, int):
                raise Forbidden("you can only revoke tokens of your own tenant")
            if claims.get("userid") != caller.user_id:
                self._require_tenant_admin(caller, "revoke other users' tokens")
            self._revoke_jti(jti, caller.tenant, exp)
            return {"message": "token revoked", "jti": jti}
        target = self._user(caller.tenant, body["username"])
        if target.id != caller.user_id:
            self._require_tenant_admin(caller, "revoke other users' tokens")
        version = self._store.bump_token_version(target.id)
        if version is not None:
            self._cache.set_version(caller.tenant, target.id, version)
        return {"message": f"every token of user {target.username!r} revoked"}

    def _revoke_jti(self, jti: str, tenant: str, exp: int) -> None:
        now = int(time.time())
        if exp <= now:
            return
        self._store.add_revocation(jti, tenant, exp)
        self._cache.revoke(tenant, jti, exp - now)
        log.info("token revoked", extra={"tenant": tenant, "jti": jti})

    def _require_tenant_admin(self, caller: Caller, what: str) -> None:
        if ADMIN_GROUP not in {g.name for g in self._store.user_groups(caller.user_id)}:
            raise Forbidden(f"only members of the group {ADMIN_GROUP!r} may {what}")

    # -- decisions ---------------------------------------------------------------------------------------------
    def decide(self, caller: Caller, method: str, path: str) -> str:
        """``permit`` or ``deny`` for ``method`` on ``path`` (normalised), from the cache when it can."""
        gen = caller.generation
        if gen is not None:
            cached = self._cache.decision(caller.tenant, gen, caller.user_id, method, path)
            if cached in (pdp.PERMIT, pdp.DENY):
                return cached
        decision = pdp.decide(self._store.user_all_permissions(caller.user_id), method, path)
        if gen is not None:
            self._cache.store_decision(caller.tenant, gen, caller.user_id, method, path, decision)
        return decision

    def pdp(self, token: object, action: object, resource: object) -> str:
        """dojot's PDP: any problem with the token is a ``deny``."""
        method, path = pdp.normalize_method(action), pdp.normalize_path(resource)
        if not isinstance(token, str) or not token:
            raise Invalid('"jwt" must be a token')
        try:
            caller = self.authenticate(token)
        except Unauthenticated:
            return pdp.DENY
        return self.decide(caller, method, path)

    def authorize(self, token: str, method: str, path: str) -> Caller:
        """The caller, if its token is good (401 otherwise) and its permissions permit ``method`` on ``path``
        (403 otherwise)."""
        caller = self.authenticate(token)
        norm_method, norm_path = pdp.normalize_method(method), pdp.normalize_path(path)
        if self.decide(caller, norm_method, norm_path) != pdp.PERMIT:
            raise Forbidden(f"your permissions do not allow {norm_method} {norm_path}")
        return caller

    def _changed(self, tenant: str) -> None:
        self._cache.invalidate(tenant)

    # -- tenants -----------------------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        return self._store.tenants()

    def require_management_admin(self, caller: Caller) -> None:
        if caller.tenant != self._cfg.management_tenant:
            raise Forbidden("only administrators of the management tenant manage tenants")
        self._require_tenant_admin(caller, "manage tenants")

    def create_tenant(self, tenant: object) -> bool:
        """Create ``tenant``; True when it is new. Its CREATE event is committed with it (the outbox) and
        published at once, after its topics were made; an existing tenant only gets the topics it lacks."""
        if not isinstance(tenant, str):
            raise Invalid('send {"tenant": "<name>"}')
        validate_tenant(tenant)
        created = self._store.create_tenant(tenant)
        if created:
            self._test_exit_after_commit(tenant)
            self._changed(tenant)
            self._publish_pending()
            log.info("tenant created", extra={"tenant": tenant})
        elif self._tenancy is not None:
            self._tenancy.ensure_topics(tenant)
        return created

    def delete_tenant(self, tenant: str) -> None:
        """Delete ``tenant`` and everything of it. Its DELETE event is committed with it (the outbox) and
        published at once; then its topics are deleted."""
        validate_tenant(tenant)
        if tenant == self._cfg.management_tenant:
            raise Invalid("the management tenant cannot be deleted")
        user_ids = self._store.delete_tenant(tenant)
        if user_ids is None:
            raise NotFound(f"no tenant {tenant!r}")
        for uid in user_ids:
            self._cache.set_version(tenant, uid, GONE)
        self._changed(tenant)
        self._publish_pending()
        log.info("tenant deleted", extra={"tenant": tenant, "users_removed": len(user_ids)})

    def _publish_pending(self) -> None:
        """Publish the queued tenancy events now. When that fails (broker away), the change stays committed and
        its event queued: the relay's thread publishes it (see auth.events)."""
        if self._tenancy is None:
            return
        try:
            self._tenancy.drain()
        except Exception as exc:  # noqa: BLE001  (nothing is lost: the event is in the outbox)
            log.warning(
                "tenancy event not published yet; the relay will retry", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    def _test_exit_after_commit(self, tenant: str) -> None:
        if self._cfg.test_exit_after_tenant_commit and tenant == self._cfg.test_exit_after_tenant_commit:
            log.critical("test hook: exiting after the tenant's commit, before its event", extra={"tenant": tenant})
            # 3 is gunicorn's "worker failed to boot": its master then stops too, so the whole service dies here.
            os._exit(3)

    # -- users -------------------------------------------------------------------------------------------------
    def _user(self, tenant: str, ref: object) -> User:
        if not isinstance(ref, str | int) or isinstance(ref, bool) or (isinstance(ref, str) and not ref):
            raise Invalid("name the user by id or username")
        user = self._store.user(tenant, ref)
        if user is None:
            raise NotFound(_NO_USER)
        return user

    def users(self, tenant: str) -> list[User]:
        return self._store.users(tenant)

    def user(self, tenant: str, ref: str) -> User:
        return self._user(tenant, ref)

    def create_user_for(self, caller: Caller, body: dict[str, Any]) -> tuple[User, str | None]:
        """dojot's ``POST /auth/user`` by ``caller``: the user is created in the tenant ``service`` names (the
        caller's own when left out). Only an administrator of the management tenant may name another tenant
        (dojot's way for the platform's administrator to create users of a tenant); any other caller gets 403,
        whether or not that tenant exists."""
        service = body.get("service", caller.tenant)
        if service != caller.tenant:
            if caller.tenant != self._cfg.management_tenant:
                raise Forbidden("users can only be created in your own tenant ('service' must be your tenant)")
            self._require_tenant_admin(caller, "create users of other tenants")
            if not isinstance(service, str):
                raise Invalid('"service" must be a tenant name')
            validate_tenant(service)
            if not self._store.tenant_exists(service):
                raise NotFound(f"no tenant {service!r}; create it first (POST /auth/tenants)", service=service)
        return self.create_user(str(service), body, created_by=str(caller.user_id))

    def create_user(self, tenant: str, body: dict[str, Any], created_by: str = "0") -> tuple[User, str | None]:
        """Create a user of ``tenant`` (dojot's body); the reset link that sets its first password when the body
        carries no ``passwd``."""
        unknown = set(body) - {"username", "service", "email", "name", "profile", "passwd"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; a user has username, name, email, profile, service")
        username = validate_username(body.get("username"))
        service = body.get("service", tenant)
        if service != tenant:
            raise Forbidden("users can only be created in your own tenant ('service' must be your tenant)")
        name = text_field(body, "name")
        email = validate_email(text_field(body, "email"))
        profile = text_field(body, "profile", default=USER_GROUP) or USER_GROUP
        passwd = body.get("passwd")
        if passwd is not None:
            password_hash = self._hasher.hash(self.policy.check_shape(passwd))
        else:
            password_hash = UNUSABLE
        user = self._store.create_user(tenant, username, profile, password_hash, name, email, created_by)
        self._changed(tenant)
        link = self._reset_link(user.id) if passwd is None else None
        log.info("user created", extra={"tenant": tenant, "username": username})
        return user, link

    def update_user(self, tenant: str, ref: str, body: dict[str, Any], caller: Caller) -> User:
        """Change name, e-mail or profile (fields left out keep their value)."""
        user = self._user(tenant, ref)
        unknown = set(body) - {"username", "service", "email", "name", "profile", "id"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; name, email and profile can be changed")
        if "username" in body and body["username"] != user.username:
            raise Invalid("usernames cannot be changed")
        if "service" in body and body["service"] != tenant:
            raise Invalid("a user cannot move to another tenant")
        name = text_field(body, "name", default=user.name)
        email = validate_email(text_field(body, "email", default=user.email))
        profile = text_field(body, "profile", default=user.profile) or user.profile
        if user.id == caller.user_id and profile != user.profile:
            raise Invalid("you cannot change your own profile")
        updated = self._store.update_user(tenant, user.id, name, email, profile)
        if updated.token_version != user.token_version:
            self._cache.set_version(tenant, user.id, updated.token_version)
        self._changed(tenant)
        return updated

    def delete_user(self, tenant: str, ref: str, caller: Caller) -> None:
        user = self._user(tenant, ref)
        if user.id == caller.user_id:
            raise Invalid("you cannot delete yourself")
        if not self._store.delete_user(tenant, user.id):
            raise NotFound(_NO_USER)
        self._cache.set_version(tenant, user.id, GONE)
        self._changed(tenant)
        log.info("user deleted", extra={"tenant": tenant, "username": user.username})

    # -- passwords ---------------------------------------------------------------------------------------------
    def _set_password(self, user_id: int, password: object) -> None:
        """Apply the policy (length; none of the recent passwords), store the new hash, revoke older tokens."""
        new = self.policy.check_shape(password)
        for old in self._store.password_history(user_id, self.policy.history):
            if self._hasher.verify(new, old):
                raise Invalid(f"the new password must differ from your last {self.policy.history} passwords")
        version = self._store.set_password(user_id, self._hasher.hash(new), keep=max(self.policy.history - 1, 0))
        if version is None:
            raise NotFound(_NO_USER)
        owner = self._store.user_by_id(user_id)  # the tenant is part of the cache key
        if owner is not None:
            self._cache.set_version(owner.service, user_id, version)

    def change_password(self, caller: Caller, body: dict[str, Any]) -> None:
        old, new = body.get("oldpasswd"), body.get("newpasswd")
        if not isinstance(old, str) or not isinstance(new, str):
            raise Invalid('send {"oldpasswd": "...", "newpasswd": "..."}')
        user = self._store.user(caller.tenant, caller.user_id)
        if user is None:
            raise Unauthenticated("the token's user no longer exists")
        if not self._hasher.verify(old, user.password_hash):
            raise Forbidden("the old password is wrong")
        self._set_password(user.id, new)
        log.info("password changed", extra={"tenant": caller.tenant, "username": user.username})

    def _reset_link(self, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        self._store.create_reset(user_id, hashlib.sha256(token.encode()).hexdigest(), self._cfg.reset_ttl_seconds)
        return token

    def request_reset(self, tenant: str, ref: str) -> str:
        """A one-time link (token) that sets a new password for a user of ``tenant``. auth sends no e-mail: the
        administrator who asked hands the link to the user."""
        return self._reset_link(self._user(tenant, ref).id)

    def reset_password(self, link: object, body: dict[str, Any]) -> None:
        if not isinstance(link, str) or not link or len(link) > 200:
            raise Invalid("send the reset link as query parameter 'link'")
        password = body.get("passwd")
        self.policy.check_shape(password)
        token_hash = hashlib.sha256(link.encode()).hexdigest()
        user_id = self._store.peek_reset(token_hash)
        if user_id is None:
            raise NotFound("unknown or expired reset link")
        self._set_password(user_id, password)
        self._store.take_reset(token_hash)

    # -- groups (profiles) -------------------------------------------------------------------------------------
    def _group(self, tenant: str, ref: object) -> Group:
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise Invalid("name the group by id or name")
        group = self._store.group(tenant, ref)
        if group is None:
            raise NotFound(_NO_GROUP)
        return group

    def groups(self, tenant: str, name_part: str | None) -> list[Group]:
        if name_part is not None and len(name_part) > 50:
            raise Invalid("query parameter name has at most 50 characters")
        found = self._store.groups(tenant, name_part)
        if not found:
            raise NotFound("no group found with these filters")
        return found

    def group(self, tenant: str, ref: str) -> Group:
        return self._group(tenant, ref)

    def create_group(self, tenant: str, body: dict[str, Any]) -> Group:
        unknown = set(body) - {"name", "description"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; a group has name and description")
        group = self._store.create_group(tenant, validate_group_name(body.get("name")), text_field(body, "description"))
        self._changed(tenant)
        return group

    def update_group(self, tenant: str, ref: str, body: dict[str, Any]) -> Group:
        group = self._group(tenant, ref)
        unknown = set(body) - {"name", "description", "id"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; a group has name and description")
        name = validate_group_name(body.get("name", group.name))
        if group.name == ADMIN_GROUP and name != ADMIN_GROUP:
            raise Invalid(f"the group {ADMIN_GROUP!r} cannot be renamed (it names the tenant's administrators)")
        updated = self._store.update_group(
            tenant, group.id, name, text_field(body, "description", default=group.description)
        )
        if name != group.name:
            for u in self._store.group_users(group.id):
                self._cache.set_version(tenant, u.id, u.token_version)
        self._changed(tenant)
        return updated

    def delete_group(self, tenant: str, ref: str) -> None:
        group = self._group(tenant, ref)
        if group.name == ADMIN_GROUP:
            raise Invalid(f"the group {ADMIN_GROUP!r} cannot be deleted (it names the tenant's administrators)")
        self._store.delete_group(tenant, group.id)
        self._changed(tenant)

    # -- permissions -------------------------------------------------------------------------------------------
    def _permission(self, tenant: str, ref: object) -> Permission:
        if not isinstance(ref, str) or not ref.isdigit():
            raise Invalid("name the permission by its numeric id")
        perm = self._store.permission(tenant, ref)
        if perm is None:
            raise NotFound(_NO_PERMISSION)
        return perm

    def permissions(self, tenant: str, filters: dict[str, str]) -> list[Permission]:
        unknown = set(filters) - {"path", "method", "permission", "type", "name"}
        if unknown:
            raise Invalid(f"unknown filters {sorted(unknown)}; filter by path, method, permission, type or name")
        found = self._store.permissions(tenant, filters)
        if not found:
            raise NotFound("no permission found with these filters")
        return found

    def permission(self, tenant: str, ref: str) -> Permission:
        return self._permission(tenant, ref)

    def create_permission(self, tenant: str, spec: PermissionSpec) -> Permission:
        perm = self._store.create_permission(tenant, spec)
        self._changed(tenant)
        return perm

    def update_permission(self, tenant: str, ref: str, spec: PermissionSpec) -> Permission:
        perm = self._permission(tenant, ref)
        if perm.type == "system":
            raise Conflict("system permissions cannot be changed")
        updated = self._store.update_permission(tenant, perm.id, spec)
        self._changed(tenant)
        return updated

    def delete_permission(self, tenant: str, ref: str) -> None:
        perm = self._permission(tenant, ref)
        if perm.type == "system":
            raise Conflict("system permissions cannot be deleted")
        self._store.delete_permission(tenant, perm.id)
        self._changed(tenant)

    # -- relations ---------------------------------------------------------------------------------------------
    def user_group(self, tenant: str, user_ref: str, group_ref: str, add: bool) -> None:
        user, group = self._user(tenant, user_ref), self._group(tenant, group_ref)
        if not add and group.name == user.profile:
            raise Invalid(f"a user always stays in the group of its profile ({user.profile!r}); change the profile")
        self._store.relate("user_groups", user.id, group.id, add)
        self._changed(tenant)

    def group_permission(self, tenant: str, group_ref: str, perm_ref: str, add: bool) -> None:
        group, perm = self._group(tenant, group_ref), self._permission(tenant, perm_ref)
        self._store.relate("group_permissions", group.id, perm.pk, add)
        self._changed(tenant)

    def user_permission(self, tenant: str, user_ref: str, perm_ref: str, add: bool) -> None:
        user, perm = self._user(tenant, user_ref), self._permission(tenant, perm_ref)
        self._store.relate("user_permissions", user.id, perm.pk, add)
        self._changed(tenant)

    # -- reports -----------------------------------------------------------------------------------------------
    def user_direct_permissions(self, tenant: str, ref: str) -> list[Permission]:
        return self._store.user_direct_permissions(self._user(tenant, ref).id)

    def user_all_permissions(self, tenant: str, ref: str) -> list[Permission]:
        return self._store.user_all_permissions(self._user(tenant, ref).id)

    def user_groups(self, tenant: str, ref: str) -> list[Group]:
        return self._store.user_groups(self._user(tenant, ref).id)

    def group_permissions(self, tenant: str, ref: str) -> list[Permission]:
        return self._store.group_permissions(self._group(tenant, ref).id)

    def group_users(self, tenant: str, ref: str) -> list[User]:
        return self._store.group_users(self._group(tenant, ref).id)

    # -- internal tenant creation (service identity) ------------------------------------------------------------
    def create_tenant_with_admin(self, tenant: object, admin: object, must_be_new: bool = False) -> dict[str, Any]:
        """Create a tenant (idempotent unless ``must_be_new``) and optionally its first administrator
        ``{"username","passwd"}``."""
        if not isinstance(tenant, str):
            raise Invalid('send {"tenant": "<name>"}')
        validate_tenant(tenant)
        if admin is not None and (
            not isinstance(admin, dict)
            or not isinstance(admin.get("username"), str)
            or not isinstance(admin.get("passwd"), str)
            or set(admin) - {"username", "passwd", "name", "email"}
        ):
            raise Invalid('"admin" must be {"username": "...", "passwd": "..."}')
        if admin is not None:
            validate_username(admin["username"])
            self.policy.check_shape(admin["passwd"])
        created = self.create_tenant(tenant)
        if must_be_new and not created:
            raise Conflict(f"tenant {tenant!r} already exists", tenant=tenant)
        out: dict[str, Any] = {"tenant": tenant, "created": created}
        if admin is not None:
            user, _ = self.create_user(tenant, {**admin, "profile": ADMIN_GROUP})
            out["admin"] = user.public()
        return out
