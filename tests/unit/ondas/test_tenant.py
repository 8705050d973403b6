import pytest

from ondas.tenant import MAX_DATABASE_NAME, tenant_database_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "tenant",
    [pytest.param("admin", id="short"), pytest.param("a" * 63, id="longest"), pytest.param("b" * 50, id="long")],
)
def test_database_name_fits_mongodb(tenant: str) -> None:
    name = tenant_database_name("ondas_history_", tenant)
    assert len(name) <= MAX_DATABASE_NAME
    if len("ondas_history_" + tenant) <= MAX_DATABASE_NAME:
        assert name == "ondas_history_" + tenant


def test_long_tenant_names_do_not_collide() -> None:
    a, b = "x" * 62 + "a", "x" * 62 + "b"
    assert tenant_database_name("ondas_history_", a) != tenant_database_name("ondas_history_", b)
