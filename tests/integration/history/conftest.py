"""Fixtures of history's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="package")
def signature_only() -> Iterator[None]:
    """These tests sign their own tokens (tests/tokens.py) and run no auth: history checks token signatures only
    (ONDAS_AUTHZ=signature, also for the processes the tests start). tests/e2e/test_direct_ports.py covers the
    full check against the real auth."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONDAS_AUTHZ", "signature")
        yield
