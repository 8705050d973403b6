from __future__ import annotations

import pytest

from ondas.settings import SettingsError
from persister.settings import PersisterSettings

pytestmark = pytest.mark.unit


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PERSISTER_MONGO_URL", "PERSISTER_HEALTH_PORT", "PERSISTER_KAFKA_GROUP"):
        monkeypatch.delenv(name, raising=False)
    s = PersisterSettings.from_env()
    assert (s.health_port, s.group_id, s.db_prefix) == (8014, "persister", "ondas_history_")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTER_MONGO_URL", "mongodb://db:27017/")
    monkeypatch.setenv("PERSISTER_HEALTH_PORT", "9999")
    s = PersisterSettings.from_env()
    assert (s.mongo_url, s.health_port) == ("mongodb://db:27017/", 9999)


def test_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTER_HEALTH_PORT", "x")
    with pytest.raises(SettingsError):
        PersisterSettings.from_env()
