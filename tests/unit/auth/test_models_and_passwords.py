"""Validation of auth's inputs, password hashing (with old scrypt hashes) and the service identity keys."""

import re

import pytest

from auth.models import (
    CATALOGUE,
    DEFAULT_GRANTS,
    DOJOT_PERMISSIONS,
    RESERVED_PERMISSION_IDS,
    permission_spec,
    validate_email,
    validate_group_name,
    validate_username,
)
from auth.passwords import UNUSABLE, Hasher, PasswordPolicy, legacy_scrypt_hash
from ondas.errors import Invalid
from ondas.service_identity import (
    derive_service_key,
    parse_service_authorization,
    service_authorization,
    verify_service_key,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["bob", "b0b", "alice.smith", "t1-admin", "_svc"])
def test_valid_usernames(name):
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "Bob", "12345", "a/b", "a b", "-x", "x" * 51, None, 3], ids=str)
def test_invalid_usernames(name):
    with pytest.raises(Invalid):
        validate_username(name)


@pytest.mark.parametrize("name", ["", "123", "a/b", "x" * 51, None], ids=str)
def test_invalid_group_names(name):
    with pytest.raises(Invalid):
        validate_group_name(name)


def test_email_is_optional_but_checked():
    assert validate_email("") == ""
    assert validate_email("a@b.c") == "a@b.c"
    with pytest.raises(Invalid):
        validate_email("not-an-address")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "p", "path": "/(", "method": "GET", "permission": "permit"},
        {"name": "p", "path": "/x", "method": "", "permission": "permit"},
        {"name": "p", "path": "/x", "method": "GET", "permission": "allow"},
        {"name": "p", "path": "/x", "method": "GET", "permission": "permit", "type": "system"},
        {"name": "p", "path": "/x", "method": "GET", "permission": "permit", "extra": 1},
        {"path": "/x", "method": "GET", "permission": "permit"},
    ],
    ids=["bad-regex", "empty-method", "bad-decision", "system", "unknown-field", "no-name"],
)
def test_permission_spec_refuses(body):
    with pytest.raises(Invalid):
        permission_spec(body)


def test_default_profiles_are_admin_and_user():
    assert set(DEFAULT_GRANTS) == {"admin", "user"}
    ids = {pid for pid, _ in CATALOGUE}
    assert all(set(grants) <= ids for grants in DEFAULT_GRANTS.values())
    assert DEFAULT_GRANTS["admin"] == (1,)  # dojot's all_all


def test_the_catalogue_has_dojots_ids_and_valid_patterns():
    assert [pid for pid, _ in DOJOT_PERMISSIONS] == list(range(1, 23))
    assert dict(DOJOT_PERMISSIONS)[2].name == "all_template"
    assert dict(DOJOT_PERMISSIONS)[4].name == "all_device"
    assert dict(DOJOT_PERMISSIONS)[6].name == "all_flows"
    assert len({pid for pid, _ in CATALOGUE}) == len({spec.name for _, spec in CATALOGUE}) == len(CATALOGUE)
    assert all(pid in RESERVED_PERMISSION_IDS for pid, _ in CATALOGUE if pid > 22)
    for _, spec in CATALOGUE:
        assert permission_spec(
            {"name": spec.name, "path": spec.path, "method": spec.method, "permission": spec.permission}
        )
        re.compile(spec.path)


@pytest.mark.parametrize(
    ("password", "ok"), [("short", False), ("long enough", True), ("        ", False), ("x" * 300, False), (5, False)]
)
def test_password_policy_shape(password, ok):
    policy = PasswordPolicy(min_length=8)
    if ok:
        assert policy.check_shape(password) == password
    else:
        with pytest.raises(Invalid):
            policy.check_shape(password)


def test_argon2_hashes_verify_and_differ_per_salt():
    h = Hasher(time_cost=1, memory_kib=8192)
    a, b = h.hash("s3cret-pass"), h.hash("s3cret-pass")
    assert a.startswith("$argon2id$") and a != b
    assert h.verify("s3cret-pass", a)
    assert not h.verify("wrong-pass", a)
    assert not h.needs_rehash(a)


def test_old_scrypt_hashes_verify_and_need_rehash():
    h = Hasher(time_cost=1, memory_kib=8192)
    old = legacy_scrypt_hash("legacy-pass", b"0123456789abcdef")
    assert h.verify("legacy-pass", old)
    assert not h.verify("other-pass", old)
    assert h.needs_rehash(old)


@pytest.mark.parametrize("encoded", [UNUSABLE, "", "scrypt$broken", "$argon2id$garbage"])
def test_unusable_or_broken_hashes_never_verify(encoded):
    assert not Hasher(time_cost=1, memory_kib=8192).verify("anything", encoded)


def test_service_keys_are_per_service():
    k1, k2 = derive_service_key("master", "persister"), derive_service_key("master", "history")
    assert k1 != k2
    assert verify_service_key("master", "persister", k1)
    assert not verify_service_key("master", "history", k1)
    assert not verify_service_key("other-master", "persister", k1)
    assert not verify_service_key("", "persister", k1)
    assert parse_service_authorization(service_authorization("persister", k1)) == ("persister", k1)


@pytest.mark.parametrize("header", [None, "", "Bearer x", "Service", "Service nokey", "Service BAD:key", "Service a:"])
def test_service_authorization_parsing_refuses(header):
    assert parse_service_authorization(header) is None
