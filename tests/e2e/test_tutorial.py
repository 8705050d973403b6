"""dojot's tutorial (seed 004 §11) as README.md writes it: the blocks marked ``<!-- tutorial ... -->`` run
unchanged, in order, in one bash, against the e2e platform (free ports, never the defaults), and the test
checks what they printed. Plus the platform's own status and the HTTP agent's TLS listener."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from ondasctl.config import PORTS
from tests.e2e.helpers import api, poll

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# A block the test runs: an HTML comment starting with "tutorial" on the line right before a ```sh fence.
TUTORIAL_BLOCK = re.compile(r"^<!-- tutorial\b[^\n]*-->\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SEPARATOR = "=== ondas-tutorial-block "
# What the test prints after the README's blocks, from the same shell.
VARIABLES = ("GW", "MQTT_HOST", "MQTT_PORT", "MQTTS_PORT", "CA", "TEMPLATE_ID", "DEVICE_ID")

TEMPLATE = {
    "label": "Thermometer Template",
    "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "fan", "type": "actuator", "value_type": "float"},
    ],
}


def create_device(platform, token, label="device"):
    r = api("POST", f"{platform.gateway}/template", token, json=TEMPLATE)
    assert r.status_code == 200, r.text
    template = r.json()["template"]
    assert template["label"] == "Thermometer Template"
    assert {a["label"] for a in template["attrs"]} == {"temperature", "fan"}
    r = api("POST", f"{platform.gateway}/device", token, json={"templates": [str(template["id"])], "label": label})
    assert r.status_code == 200, r.text
    device_id = r.json()["devices"][0]["id"]
    return template, device_id


def history(platform, token, device_id, query="lastN=3&attr=temperature"):
    return api("GET", f"{platform.gateway}/history/device/{device_id}/history?{query}", token)


def tutorial_blocks() -> list[str]:
    blocks = TUTORIAL_BLOCK.findall(README.read_text())
    assert len(blocks) >= 2, "README.md: no blocks marked <!-- tutorial --> (the tutorial and device certificates)"
    return blocks


def run_tutorial(platform, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Run the README's blocks as a user pastes them: from the checkout, in a shell whose only Ondas setting is
    the e2e platform's data directory (a user's is .data). Return each block's output and the shell's variables."""
    script = ["set -euo pipefail"]
    for i, block in enumerate(tutorial_blocks()):
        script += [f"echo '{SEPARATOR}{i}'", block]
    script += [f"echo '{SEPARATOR}variables'", *(f'echo "{v}=${{{v}}}"' for v in VARIABLES)]
    env = {k: v for k, v in platform.env.items() if not k.startswith(("ONDAS_", "MAKE", "MFLAGS"))}
    env["ONDAS_DATA_DIR"] = str(platform.data_dir)
    env["TMPDIR"] = str(tmp_path)  # mktemp -d of the device-certificate block
    run = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"the tutorial failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    parts = run.stdout.split(SEPARATOR)
    assert parts[0] == "", run.stdout
    outputs = [p.partition("\n")[2] for p in parts[1:-1]]
    variables = dict(line.split("=", 1) for line in parts[-1].partition("\n")[2].splitlines())
    return outputs, variables


def json_documents(text: str) -> list[Any]:
    """Every JSON document printed one after the other (jq's, curl's, mosquitto_sub's); anything else fails."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def test_status_reports_every_process_healthy(platform):
    status = platform.status
    for key in ("gateway_url", "mqtt_host", "mqtt_port", "mqtts_port", "kafka_bootstrap", "admin_user"):
        assert status[key], key
    names = {p["name"] for p in status["processes"]}
    assert {
        "kafka",
        "postgres",
        "redis",
        "mongo",
        "mosquitto",
        "auth",
        "device-manager",
        "persister",
        "history",
        "mqtt-agent",
        "http-agent",
        "http-agent-tls",
        "x509-mgmt",
        "x509-mgmt-worker",
        "flowbroker",
        "flowbroker-worker",
        "kafka-ws",
        "gateway",
    } <= names
    assert status["healthy"], [p for p in status["processes"] if not p["healthy"]]


def test_up_twice_is_harmless(platform):
    again = platform.ctl("up")
    assert "already running" in again.stdout
    assert (
        json.loads(platform.ctl("status", "--format", "json").stdout)["supervisor_pid"]
        == (platform.status["supervisor_pid"])
    )


def test_the_tutorial_names_no_port_or_host_of_its_own():
    """Everything comes from `make status FORMAT=json`: no default port, no host name in the commands."""
    defaults = {str(default) for _setting, default in PORTS.values()}
    for block in tutorial_blocks():
        commands = "\n".join(line.partition("#")[0] for line in block.splitlines())  # not the comments
        assert not set(re.findall(r"\d+", commands)) & defaults, block
        assert "localhost" not in commands and "127.0.0.1" not in commands, block
    assert "make -s status FORMAT=json" in tutorial_blocks()[0]


def test_the_readme_tutorial_as_written_on_ports_that_are_not_the_defaults(platform, tmp_path):
    status = platform.status
    chosen = {
        "gateway": urlsplit(status["gateway_url"]).port,
        "mqtt": status["mqtt_port"],
        "mqtts": status["mqtts_port"],
    }
    assert all(port != PORTS[name][1] for name, port in chosen.items()), chosen  # the point of this test

    (tutorial, certificates, *_), shell = run_tutorial(platform, tmp_path)

    # 0. The shell found this platform (through make status), not whatever listens on the default ports.
    assert shell["GW"] == status["gateway_url"]
    assert (shell["MQTT_HOST"], shell["MQTT_PORT"]) == (status["mqtt_host"], str(status["mqtt_port"]))
    assert shell["MQTTS_PORT"] == str(status["mqtts_port"])
    assert shell["CA"] == str(platform.data_dir / "tls" / "device-ca.pem")

    # 2. The template (its id captured with jq) and the device.
    token = platform.token()
    template_id, device_id = shell["TEMPLATE_ID"], shell["DEVICE_ID"]
    r = api("GET", f"{platform.gateway}/template/{template_id}", token)
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "Thermometer Template"
    assert {a["label"]: a["type"] for a in r.json()["attrs"]} == {"temperature": "dynamic", "fan": "actuator"}

    docs = json_documents(tutorial)
    listing = docs[0]
    assert set(listing["pagination"]) >= {"page", "total", "has_next", "next_page"}
    listed = {d["id"]: d for d in listing["devices"]}
    # The other e2e tests share the tenant: a first page of more than 20 devices may not show this one yet.
    assert device_id in listed or listing["pagination"]["has_next"], listing
    r = api("GET", f"{platform.gateway}/device/{device_id}", token)
    assert r.status_code == 200, r.text
    attrs = r.json()["attrs"][template_id]
    assert {a["label"]: a["type"] for a in attrs} == {"temperature": "dynamic", "fan": "actuator"}

    # 4. What the device published over MQTT, newest first.
    items = docs[1]
    assert isinstance(items, list), f"{tutorial}\npersister log:\n{platform.log('persister')[-3000:]}"
    assert [i["value"] for i in items] == [10.6, 15.6, 36.5], items
    assert all(set(i) == {"device_id", "ts", "value", "attr"} for i in items)
    assert all(i["device_id"] == device_id and i["attr"] == "temperature" for i in items)
    assert items[0]["ts"] >= items[1]["ts"] >= items[2]["ts"]

    # 5. The actuation was accepted, and the device's subscription received it.
    assert docs[2] == {"status": "configuration sent to device"}
    assert docs[3:] == [{"fan": 100}], tutorial

    # Device certificates: certreq wrote dojot's layout into mktemp -d, and the point sent over mutual TLS
    # reached history.
    assert f"certificate for {device_id}" in certificates, certificates
    [certs] = [p for p in tmp_path.iterdir() if (p / "ca").is_dir()]
    written = sorted(str(p.relative_to(certs)) for p in certs.rglob("*") if p.is_file())
    assert written == ["ca/ca.pem", f"cert_{device_id}/cert.pem", f"cert_{device_id}/private.key"], written
    r = poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and r.json() != [] and r.json()[0]["value"] == 20.1,
    )
    assert r.json()[0]["device_id"] == device_id


def test_a_device_certificate_sends_over_the_http_agents_tls_listener(platform, tmp_path):
    """The platform CA's certificate (``ondasctl device-cert``) opens the HTTP agent's TLS listener, the data
    reaches history, and once the device is removed the certificate no longer gets anything in."""
    token = platform.token()
    _, device_id = create_device(platform, token, "https thermometer")
    out = tmp_path / "cert"
    platform.ctl("device-cert", "admin", device_id, "--out", str(out))
    url = f"https://127.0.0.1:{platform.port('http_agent_tls')}/http-agent/v1/incoming-messages"
    # The listener's server certificate is x509_mgmt's; the bundle of both device CAs verifies it.
    tls = {"verify": platform.status["ca_file"], "cert": (str(out / "cert.pem"), str(out / "key.pem"))}

    def send(value: float) -> requests.Response:
        return requests.post(url, json={"data": {"temperature": value}}, timeout=15, **tls)

    # The agent may learn of the new device from its event or by asking the device manager: 204 either way.
    assert send(21.5).status_code == 204
    r = poll(lambda: history(platform, token, device_id), lambda r: r.status_code == 200 and len(r.json()) == 1)
    assert r.json()[0]["value"] == 21.5

    assert api("DELETE", f"{platform.gateway}/device/{device_id}", token).status_code == 200
    refused = poll(lambda: send(1.0), lambda r: r.status_code != 204)
    assert refused.status_code in (401, 404), refused.text  # revoked, or no such device any more
