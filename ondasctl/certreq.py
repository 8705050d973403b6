"""``ondasctl certreq``: dojot's certreq tool, against the platform's gateway.

Logs in (``POST /auth``, or a saved token with ``-t``), fetches the CA chain (``GET /x509/v1/ca``) into
``ca/ca.pem``, and for each device id makes a key pair and a CSR with CN=<device-id>, has it signed (``POST
/x509/v1/certificates``) and writes ``cert_<device-id>/cert.pem`` and ``cert_<device-id>/private.key``: dojot's
layout, so dojot's instructions (``mosquitto_pub --cafile ca/ca.pem --cert cert_<id>/cert.pem --key
cert_<id>/private.key``) work as they are. Without ``-i``, one certificate per device of the user's tenant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TIMEOUT_S = 30


class CertreqError(RuntimeError):
    pass


def add_parser(sub: Any) -> None:
    # dojot's options, -h included (so help is --help only).
    p = sub.add_parser(
        "certreq",
        help="request device certificates from x509_mgmt (dojot's certreq: -h -p -i -u -s)",
        add_help=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", dest="host", default="127.0.0.1", help="the platform's host (default 127.0.0.1)")
    p.add_argument("-p", dest="port", type=int, default=8000, help="the gateway's port (default 8000)")
    p.add_argument("-i", dest="ids", default="", help="device ids, comma-separated (default: every device)")
    p.add_argument("-u", dest="user", default="admin", help="user name (default admin)")
    p.add_argument("-s", dest="password", default="admin", help="password (default admin)")
    p.add_argument("-t", dest="token_file", default="token.jwt", help="a file with a token to use instead of -u/-s")
    p.add_argument("--out", default=".", help="where ca/ and cert_<id>/ are written (default: this directory)")
    p.add_argument("--key-type", choices=["ec", "rsa"], default="ec", help="EC P-256 (default) or RSA 2048")


def _check(r: requests.Response, what: str) -> Any:
    if r.status_code >= 400:
        try:
            message = r.json().get("message") or r.text
        except ValueError:
            message = r.text
        raise CertreqError(f"{what}: HTTP {r.status_code}: {message}")
    return r.json()


def _token(base: str, args: argparse.Namespace) -> str:
    token_file = Path(args.token_file)
    if args.token_file and token_file.is_file():
        token = token_file.read_text().strip()
        if token:
            return token
    body = _check(
        requests.post(f"{base}/auth", json={"username": args.user, "passwd": args.password}, timeout=TIMEOUT_S),
        "login",
    )
    return str(body["jwt"])


def _device_ids(base: str, headers: dict[str, str]) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        body = _check(
            requests.get(f"{base}/device", params={"page_num": page, "page_size": 100}, headers=headers, timeout=30),
            "list devices",
        )
        devices = body.get("devices") or []
        ids += [str(d["id"]) for d in devices]
        total = int((body.get("pagination") or {}).get("total") or 1)
        if not devices or page >= total:
            return ids
        page += 1


def _key_and_csr(device_id: str, key_type: str) -> tuple[bytes, str]:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)


def certreq(args: argparse.Namespace) -> list[Path]:
    base = f"http://{args.host}:{args.port}"
    out = Path(args.out)
    headers = {"Authorization": f"Bearer {_token(base, args)}"}
    ca = _check(requests.get(f"{base}/x509/v1/ca", headers=headers, timeout=TIMEOUT_S), "get the CA")
    _write(out / "ca" / "ca.pem", str(ca["caPem"]).encode())
    print(f"CA certificate (fingerprint {ca['certificateFingerprint']}) in {out / 'ca' / 'ca.pem'}")
    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else _device_ids(base, headers)
    written = []
    for device_id in ids:
        key_pem, csr_pem = _key_and_csr(device_id, args.key_type)
        body = _check(
            requests.post(f"{base}/x509/v1/certificates", json={"csr": csr_pem}, headers=headers, timeout=TIMEOUT_S),
            f"certificate for {device_id}",
        )
        d = out / f"cert_{device_id}"
        _write(d / "private.key", key_pem, 0o600)
        _write(d / "cert.pem", str(body["certificatePem"]).encode())
        print(f"certificate for {device_id} (fingerprint {body['certificateFingerprint']}) in {d}")
        written.append(d)
    return written


def cmd_certreq(args: argparse.Namespace) -> int:
    try:
        certreq(args)
    except (CertreqError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
