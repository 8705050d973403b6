import argparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ondasctl import certreq

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    certreq.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["certreq", *argv])


def test_dojots_options_and_their_defaults() -> None:
    args = parse("-h", "dojot.example", "-p", "8001", "-i", "a1,b2", "-u", "bob", "-s", "pw")
    assert (args.host, args.port, args.ids, args.user, args.password) == ("dojot.example", 8001, "a1,b2", "bob", "pw")
    d = parse()
    assert (d.host, d.port, d.ids, d.user, d.password, d.out) == ("127.0.0.1", 8000, "", "admin", "admin", ".")


@pytest.mark.parametrize(("key_type", "kind"), [("ec", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)])
def test_the_csr_names_the_device_and_matches_the_key(key_type: str, kind: type) -> None:
    key_pem, csr_pem = certreq._key_and_csr("a1b2c3", key_type)
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, kind)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["a1b2c3"]
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()
