"""Kafka connection security: one home for TLS and SASL, for every client the detector makes.

    Settings().kafka                  the contract settings (DETECTOR_KAFKA_SECURITY_PROTOCOL, ...)
    conn.client_kwargs()              keyword arguments for aiokafka AND kafka-python clients
                                      (both take security_protocol, ssl_context, sasl_mechanism,
                                      sasl_plain_username, sasl_plain_password)
    conn.faust_credentials()          the same as Faust's `broker_credentials`
    await preflight(conn)             one connection + authentication, with a one-line diagnosis

Every client (Faust app, batch ingest consumer and producer, admin calls, the CLI and
`simulate`) gets its arguments from here, so a setting added here reaches all of them.
Secrets never appear in `repr`, logs or error messages.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """Invalid or unusable Kafka security settings; the message names the setting to check."""


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it securely."""

    bootstrap: str = "127.0.0.1:9092"
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        p = self.protocol.upper()
        if p not in PROTOCOLS:
            raise KafkaSecurityError(
                f"DETECTOR_KAFKA_SECURITY_PROTOCOL={self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        object.__setattr__(self, "protocol", p)
        if self.sasl:
            mech = (self.mechanism or "PLAIN").upper()
            if mech not in MECHANISMS:
                raise KafkaSecurityError(
                    f"DETECTOR_KAFKA_SASL_MECHANISM={self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
            object.__setattr__(self, "mechanism", mech)
            if not self.username:
                raise KafkaSecurityError(f"{p} needs DETECTOR_KAFKA_SASL_USERNAME")
            if self.password is None:
                raise KafkaSecurityError(
                    f"{p} needs DETECTOR_KAFKA_SASL_PASSWORD or DETECTOR_KAFKA_SASL_PASSWORD_FILE")
        if self.keyfile and not self.certfile:
            raise KafkaSecurityError("DETECTOR_KAFKA_SSL_KEYFILE needs DETECTOR_KAFKA_SSL_CERTFILE")
        if not self.tls and (self.cafile or self.certfile):
            raise KafkaSecurityError(
                f"DETECTOR_KAFKA_SSL_* files are set but DETECTOR_KAFKA_SECURITY_PROTOCOL={p} does not use TLS "
                "(use SSL or SASL_SSL)")
        for name, path in (("CAFILE", self.cafile), ("CERTFILE", self.certfile), ("KEYFILE", self.keyfile)):
            if path and not os.path.isfile(path):
                raise KafkaSecurityError(f"DETECTOR_KAFKA_SSL_{name}={path!r}: no such file")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificates are verified (against the CA file, else the system's CAs), and so are host names
        unless DETECTOR_KAFKA_SSL_CHECK_HOSTNAME=false."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.certfile:
            try:
                ctx.load_cert_chain(self.certfile, self.keyfile)
            except (ssl.SSLError, OSError) as exc:
                raise KafkaSecurityError(
                    f"client certificate DETECTOR_KAFKA_SSL_CERTFILE/KEYFILE cannot be loaded: {exc}") from None
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for any aiokafka or kafka-python client (producer, consumer, admin)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def faust_credentials(self):
        """Faust's `broker_credentials` (None for PLAINTEXT)."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         ssl_context=self.ssl_context(), mechanism=self.mechanism)
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def describe(self) -> str:
        """For logs: protocol, mechanism and user, never the password."""
        out = self.protocol
        if self.sasl:
            out += f" {self.mechanism} as {self.username!r}"
        return out


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        part = part.strip()
        if part.startswith("kafka://"):
            part = part[len("kafka://"):]
        host, _, port = part.rpartition(":")
        if not host:
            host, port = port, "9092"
        out.append((host.strip("[]"), int(port)))
    return out


async def preflight(conn: KafkaConnection, timeout_s: float = 20.0) -> None:
    """Connect and authenticate to the first bootstrap broker that answers; raise KafkaSecurityError with
    one line saying what failed and which setting to check. Clients otherwise retry such failures
    forever ("Unable to bootstrap") and look healthy."""
    from aiokafka import errors
    from aiokafka.conn import create_conn

    kw = conn.client_kwargs()
    kw.pop("bootstrap_servers")
    last = "no bootstrap server"
    deadline = asyncio.get_running_loop().time() + timeout_s
    for host, port in _hosts(conn.bootstrap):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        where = f"{host}:{port} ({conn.describe()})"
        try:
            c = await asyncio.wait_for(create_conn(host, port, request_timeout_ms=int(left * 1000), **kw), left)
            c.close()
            return
        except ssl.SSLCertVerificationError as exc:
            if "hostname" in (exc.verify_message or "").lower() or "match" in str(exc).lower():
                raise KafkaSecurityError(
                    f"Kafka TLS: the certificate of {where} does not match the host name: check "
                    "DETECTOR_KAFKA_BOOTSTRAP (use the name in the certificate)") from None
            raise KafkaSecurityError(
                f"Kafka TLS: the certificate of {where} is not trusted ({exc.verify_message}): check "
                "DETECTOR_KAFKA_SSL_CAFILE") from None
        except ssl.SSLError as exc:
            raise KafkaSecurityError(
                f"Kafka TLS handshake with {where} failed ({exc.reason or exc}): check "
                "DETECTOR_KAFKA_SECURITY_PROTOCOL and DETECTOR_KAFKA_SSL_CERTFILE/KEYFILE") from None
        except (errors.SaslAuthenticationFailed, errors.IllegalSaslStateError):
            raise KafkaSecurityError(
                f"Kafka SASL authentication failed at {where}: check DETECTOR_KAFKA_SASL_USERNAME and "
                "DETECTOR_KAFKA_SASL_PASSWORD (or _FILE) and DETECTOR_KAFKA_SASL_MECHANISM") from None
        except errors.UnsupportedSaslMechanismError as exc:
            raise KafkaSecurityError(
                f"Kafka at {where} does not offer SASL mechanism {conn.mechanism}: check "
                f"DETECTOR_KAFKA_SASL_MECHANISM ({exc})") from None
        except asyncio.TimeoutError:
            last = (f"Kafka at {where} did not answer within {timeout_s:.0f} s: check DETECTOR_KAFKA_BOOTSTRAP "
                    "and DETECTOR_KAFKA_SECURITY_PROTOCOL (a TLS listener spoken to without TLS stays silent)")
        except (OSError, errors.KafkaError) as exc:
            text = str(exc)
            if conn.sasl and ("closed" in text.lower() or "IllegalSasl" in text):
                last = (f"Kafka at {where} closed the connection during authentication: check "
                        "DETECTOR_KAFKA_SECURITY_PROTOCOL and DETECTOR_KAFKA_SASL_MECHANISM")
            else:
                last = f"cannot connect to Kafka at {where}: {text[:200]}: check DETECTOR_KAFKA_BOOTSTRAP"
    raise KafkaSecurityError(last)


def client_kwargs(conn: "KafkaConnection | str") -> dict[str, Any]:
    """Client arguments for a connection, or for a bare bootstrap string (plaintext, for tests and tools)."""
    return (KafkaConnection(bootstrap=conn) if isinstance(conn, str) else conn).client_kwargs()
