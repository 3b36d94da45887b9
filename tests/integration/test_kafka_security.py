"""The worker on a secured Kafka: SASL_SSL with SCRAM-SHA-512, a CA and broker certificate made here.

A private broker is started from the same Maven jars as the shared one (`scripts/kafka.sh` with
`KAFKA_SECURITY=sasl_ssl`, its own KAFKA_HOME_DIR and ports; the shared broker is not touched).
Its SCRAM users are created when its storage is formatted. Done when:
- the worker runs against it, `detector simulate incident` (over SASL_SSL too) is detected and
  paged to a local webhook receiver;
- a wrong password and an untrusted CA each end start-up within 30 s, with a non-zero exit and
  one line naming the setting to check, and the password never appears in the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, Namespace, Receiver, Worker, free_port, wait_until

pytestmark = [pytest.mark.kafka]

ADMIN_PW = "admin-Secret-1"
DETECTOR_PW = "detector-Secret-2"
QA = "crm-winback-email-qa"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.pem"


def make_broker_cert(d: Path, ca: str) -> Path:
    """A PEM keystore (PKCS#8 key + certificate for 127.0.0.1/localhost) signed by `ca`."""
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", "broker.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    keystore = d / "broker-keystore.pem"
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    return keystore


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure-kafka")
    ca = make_ca(d, "test-ca")
    rogue = make_ca(d, "rogue-ca")
    keystore = make_broker_cert(d, "test-ca")
    port, ctrl = free_port(), free_port()
    env = {**os.environ, "KAFKA_SECURITY": "sasl_ssl", "KAFKA_HOME_DIR": str(d / "kafka"),
           "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(ctrl),
           "KAFKA_SSL_KEYSTORE": str(keystore), "KAFKA_SSL_TRUSTSTORE": str(ca),
           "KAFKA_SCRAM_USERS": f"admin:{ADMIN_PW},detector:{DETECTOR_PW}",
           "PYTHON": sys.executable}
    up = subprocess.run(["bash", "scripts/kafka.sh", "up"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=240)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield {"bootstrap": f"127.0.0.1:{port}", "ca": str(ca), "rogue_ca": str(rogue), "dir": d}
    finally:
        subprocess.run(["bash", "scripts/kafka.sh", "down"], cwd=ROOT, env=env, capture_output=True, timeout=60)


def _security_env(broker, password: str = DETECTOR_PW, ca: str | None = None) -> dict[str, str]:
    pw_file = broker["dir"] / f"pw-{abs(hash(password))}"
    pw_file.write_text(password + "\n")
    return {
        "DETECTOR_KAFKA_BOOTSTRAP": broker["bootstrap"],
        "DETECTOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DETECTOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DETECTOR_KAFKA_SASL_USERNAME": "detector",
        "DETECTOR_KAFKA_SASL_PASSWORD_FILE": str(pw_file),
        "DETECTOR_KAFKA_SSL_CAFILE": ca or broker["ca"],
    }


def _start_expecting_failure(broker, tmp_path, extra: dict[str, str]) -> tuple[int, str, float]:
    ns = Namespace()
    env = {**os.environ, **ns.env(DETECTOR_WEB_PORT=str(free_port()), DETECTOR_DATA_DIR=str(tmp_path / "d")),
           **extra}
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "detector", "worker"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    return run.returncode, run.stdout + run.stderr, time.monotonic() - t0


def _message_lines(out: str) -> list[str]:
    """The lines a person reads: exactly one, besides the JSON log lines of a normal start (INFO)."""
    logs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert not [r for r in logs if r["level"] in ("WARNING", "ERROR", "CRITICAL")], out
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("{")]
    assert len(lines) == 1, out
    return lines


def test_worker_detects_and_pages_over_sasl_ssl(secure_broker, tmp_path):
    ns = Namespace(partitions=2)
    receiver = Receiver()
    sec = _security_env(secure_broker)
    w = Worker(ns, tmp_path, {**sec, "DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": "t"})
    try:
        w.start(timeout=90)
        run = subprocess.run([sys.executable, "-m", "detector", "simulate", "incident", "--bootstrap",
                              secure_broker["bootstrap"], "--prefix", ns.prefix, "--url", w.url, "--others", "60",
                              "--warmup", "1", "--json"],
                             cwd=ROOT, env={**os.environ, **ns.env(), **sec}, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        truth = json.loads(run.stdout)
        page = receiver.wait_for(lambda b: b.get("experiment") == QA and b.get("rule") == "allowlist_breach"
                                 and b.get("status") == "firing", timeout=30)[0]
        assert page["schema"] == "exposure-alert/v1"

        def exact():
            code, body = w.request("GET", f"/v1/experiments/{QA}/blast-radius?limit=1000", None,
                                   {"Authorization": "Bearer t"})
            return code == 200 and {u["user_id"] for u in body.get("users", [])} == set(truth["offenders"])

        wait_until(exact, 30, 0.5, "the blast radius to hold exactly the offenders")
        log = w.log_path.read_text()
        assert DETECTOR_PW not in log
    finally:
        w.stop()


def test_wrong_password_fails_startup_clearly(secure_broker, tmp_path):
    code, out, took = _start_expecting_failure(secure_broker, tmp_path, _security_env(secure_broker, "wrong-pw-9"))
    assert code != 0 and took < 30, (code, took, out)
    lines = _message_lines(out)
    print(f"wrong password: {took:.1f} s: {lines[0]}")
    assert "SASL authentication failed" in lines[0] and "DETECTOR_KAFKA_SASL_PASSWORD" in lines[0], out
    assert "wrong-pw-9" not in out and DETECTOR_PW not in out


def test_untrusted_ca_fails_startup_clearly(secure_broker, tmp_path):
    env = _security_env(secure_broker, ca=secure_broker["rogue_ca"])
    code, out, took = _start_expecting_failure(secure_broker, tmp_path, env)
    assert code != 0 and took < 30, (code, took, out)
    lines = _message_lines(out)
    print(f"untrusted CA: {took:.1f} s: {lines[0]}")
    assert "not trusted" in lines[0] and "DETECTOR_KAFKA_SSL_CAFILE" in lines[0], out
    assert DETECTOR_PW not in out
