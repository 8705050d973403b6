"""auth reads the administrators' tenant from the platform's one setting, ``ONDAS_MANAGEMENT_TENANT``; its earlier
name ``AUTH_MANAGEMENT_TENANT`` still works alone, and the two may not disagree."""

import pytest

from auth.settings import Settings
from ondas.settings import SettingsError

NAMES = ("ONDAS_MANAGEMENT_TENANT", "AUTH_MANAGEMENT_TENANT")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "admin"),
        ({"ONDAS_MANAGEMENT_TENANT": "ops"}, "ops"),
        ({"AUTH_MANAGEMENT_TENANT": "ops"}, "ops"),
        ({"ONDAS_MANAGEMENT_TENANT": "ops", "AUTH_MANAGEMENT_TENANT": "ops"}, "ops"),
    ],
    ids=["default", "platform-setting", "legacy-alias", "both-agree"],
)
def test_the_management_tenant_is_the_platform_setting(monkeypatch, env, expected):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.management_tenant == expected
    assert settings.common.management_tenant == expected  # one notion, whichever name set it


def test_the_two_names_may_not_disagree(monkeypatch):
    monkeypatch.setenv("ONDAS_MANAGEMENT_TENANT", "ops")
    monkeypatch.setenv("AUTH_MANAGEMENT_TENANT", "admin")
    with pytest.raises(SettingsError, match="differ"):
        Settings.from_env()


def test_the_crash_hook_is_off_unless_set(monkeypatch):
    monkeypatch.delenv("AUTH_TEST_EXIT_AFTER_TENANT_COMMIT", raising=False)
    assert Settings.from_env().test_exit_after_tenant_commit == ""
