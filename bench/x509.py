"""Certificate authority benchmark: certificates issued per second from CSRs through the gateway, next to the same
signing done in-process with the same library and the same issuing CA key in the same run. Run on demand, never
by the test suite:

    .venv/bin/python -m bench.x509 [--threads 8] [--duration 10] [--warmup 3] [--devices 20] [--signers 2]

It starts the whole platform the way a user does (``python -m ondasctl up``, in a throw-away data directory on
free ports, login rate limit raised; the same ``Platform`` as ``bench.auth_gateway``), logs in as the seeded
admin and creates ``--devices`` devices through the gateway. Before anything is timed it generates one CSR per
device and key type (EC P-256 and RSA-2048, CN = the device id, signed with SHA-256). Then, per key type:

- **through the gateway**: ``--threads`` client threads (one keep-alive ``requests.Session`` each; client ``i``
  posts the CSR of device ``i mod --devices``) send ``POST /x509/v1/certificates {"csr": ...}`` back to back;
  every answer must be 201 (a new certificate each time: the serial is random). Each request goes through the
  gateway (route, PDP), and x509_mgmt parses and checks the CSR, asks the device manager that the device
  exists, signs, and stores the certificate, its audit row and its outbox event in one transaction.
- **in-process**: the issuing CA the running service uses, loaded from its data directory with x509_mgmt's own
  ``CertificateAuthority.open`` (and ``X509_MGMT_KEY_PASSPHRASE`` when set), does the service's crypto for the
  same CSRs in a loop: ``load_csr`` (parse, CSR signature, key check), ``issue`` (build and sign with the
  issuing CA's key) and the PEM encoding. ``--signers`` processes (default: the API's gunicorn worker count)
  run that loop at the same time for the same window.

The table shows certificates/s and p50/p99 per certificate of both, and the ratio. Clients, services,
PostgreSQL, Redis and the gateway share the machine's cores; compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bench.auth_gateway import Platform
from bench.common import Request, Result, load, print_table
from ondasctl.pki import x509_data_dir
from x509_mgmt import ca as camod

CERTIFICATES_PATH = "/x509/v1/certificates"
KEY_TYPES = ("EC P-256", "RSA-2048")
CERTIFICATE_DAYS = 365  # X509_MGMT_CERTIFICATE_DAYS's default, what the service signs with


def make_csr(key_type: str, common_name: str) -> str:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "EC P-256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def sign_loop(
    data_dir: str,
    passphrase: str,
    tenant: str,
    csrs: Sequence[tuple[str, str]],
    start_at: float,
    warmup: float,
    duration: float,
) -> tuple[list[float], float]:
    """One signer process: opens the service's issuing CA and, from wall-clock ``start_at``, does the service's
    crypto for ``csrs`` ((device id, PEM)) round robin; latencies (ms) of the counted window and when it ended."""
    authority = camod.CertificateAuthority.open(Path(data_dir), Path(data_dir) / "root", passphrase)
    time.sleep(max(0.0, start_at - time.time()))
    warm_end = time.perf_counter() + warmup
    end = warm_end + duration
    latencies: list[float] = []
    i = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        device_id, text = csrs[i % len(csrs)]
        i += 1
        csr = camod.load_csr(text)
        cert = authority.issue(csr, f"{tenant}:{device_id}", CERTIFICATE_DAYS, dt.datetime.now(dt.UTC))
        camod.pem(cert)
        t1 = time.perf_counter()
        if t0 >= warm_end:
            latencies.append((t1 - t0) * 1000)
    return latencies, time.perf_counter() - warm_end


def in_process(
    data_dir: Path, tenant: str, csrs: Sequence[tuple[str, str]], signers: int, warmup: float, duration: float
) -> Result:
    passphrase = os.environ.get("X509_MGMT_KEY_PASSPHRASE", "")
    start_at = time.time() + 3.0  # every signer has loaded the CA by then: they all run in the same window
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=signers, mp_context=ctx) as pool:
        futures = [
            pool.submit(
                sign_loop, str(data_dir), passphrase, tenant, csrs[k::signers] or csrs, start_at, warmup, duration
            )
            for k in range(signers)
        ]
        results = [f.result() for f in futures]
    latencies = [x for lat, _ in results for x in lat]
    return Result(sum(len(lat) / max(window, duration) for lat, window in results), latencies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds counted per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not counted before each measurement")
    parser.add_argument("--devices", type=int, default=20, help="devices, and CSRs per key type (one each)")
    parser.add_argument(
        "--signers",
        type=int,
        default=int(os.environ.get("X509_MGMT_HTTP_WORKERS", "2")),
        help="in-process signer processes (default: the API's worker count, X509_MGMT_HTTP_WORKERS or 2)",
    )
    args = parser.parse_args(argv)

    plat = Platform()
    api: dict[str, Result] = {}
    local: dict[str, Result] = {}
    ca_desc = "?"
    try:
        print("starting the platform (ondasctl up) ...", file=sys.stderr)
        plat.start()
        token = plat.token()
        bearer = {"Authorization": f"Bearer {token}"}
        gateway = plat.gateway
        device_ids: list[str] = []
        with requests.Session() as s:
            for i in range(args.devices):
                resp = s.post(f"{gateway}/device", json={"label": f"bench-x509-{i}", "templates": []}, headers=bearer)
                if resp.status_code not in (200, 201):
                    raise RuntimeError(f"POST /device: {resp.status_code} {resp.text[:300]}")
                device_ids.append(str(resp.json()["devices"][0]["id"]))

        print(f"generating {args.devices} CSRs per key type ({', '.join(KEY_TYPES)}) ...", file=sys.stderr)
        csrs = {kt: [(d, make_csr(kt, d)) for d in device_ids] for kt in KEY_TYPES}
        # One certificate outside the timing: the identity the service signs (<tenant>:<device id>) gives the
        # tenant the in-process signer puts in the CN, so both sign the same subject.
        resp = requests.post(
            f"{gateway}{CERTIFICATES_PATH}", json={"csr": csrs[KEY_TYPES[0]][0][1]}, headers=bearer, timeout=30
        )
        if resp.status_code != 201:
            raise RuntimeError(f"POST {CERTIFICATES_PATH}: {resp.status_code} {resp.text[:300]}")
        issued = x509.load_pem_x509_certificate(resp.json()["certificatePem"].encode())
        identity = str(issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        tenant = identity.rsplit(":", 1)[0]
        issuer = camod.CertificateAuthority.open(
            x509_data_dir(plat.data_dir),
            x509_data_dir(plat.data_dir) / "root",
            os.environ.get("X509_MGMT_KEY_PASSPHRASE", ""),
        ).issuing
        if not camod.issued_by(issued, issuer):
            raise RuntimeError("the service's certificate is not signed by the issuing CA in its data directory")
        ca_key = issuer.public_key()
        ca_desc = (
            f"EC {camod.CURVES.get(ca_key.curve.name, ca_key.curve.name)}"
            if isinstance(ca_key, ec.EllipticCurvePublicKey)
            else f"{type(ca_key).__name__.lstrip('_')}"
        )

        for kt in KEY_TYPES:
            reqs = [
                Request("POST", f"{gateway}{CERTIFICATES_PATH}", bearer, {"csr": text}, expect=201)
                for _, text in csrs[kt]
            ]
            print(
                f"measuring {kt} via gateway ({args.threads} threads, {args.warmup:g}s + {args.duration:g}s) ...",
                file=sys.stderr,
            )
            api[kt] = load(reqs, args.threads, args.duration, args.warmup)
            print(
                f"measuring {kt} in-process ({args.signers} processes, {args.warmup:g}s + {args.duration:g}s) ...",
                file=sys.stderr,
            )
            local[kt] = in_process(
                x509_data_dir(plat.data_dir), tenant, csrs[kt], args.signers, args.warmup, args.duration
            )
    finally:
        print("stopping the platform (ondasctl down) ...", file=sys.stderr)
        plat.stop()

    rows = []
    for kt in KEY_TYPES:
        a, b = api[kt], local[kt]
        rows.append(
            (
                f"{kt} CSR -> certificate via gateway (certs/s)",
                f"{a.rate:,.0f}",
                f"{b.rate:,.0f} ({args.signers} processes)",
                f"{b.rate / a.rate:.2f}x",
            )
        )
        rows.append(
            (
                f"{kt} CSR -> certificate (p50 / p99 ms)",
                f"{a.p50:.1f} / {a.p99:.1f}",
                f"{b.p50:.2f} / {b.p99:.2f}",
                f"{a.p50 / b.p50:.1f}x",
            )
        )
    print(
        f"{args.threads} client threads, {args.devices} devices, {args.signers} in-process signers, "
        f"{args.duration:g}s per measurement after {args.warmup:g}s of warm-up; issuing CA key: {ca_desc}"
    )
    print_table(("operation", "through the gateway", "in-process signing", "cost vs in-process"), rows)


if __name__ == "__main__":
    main()
