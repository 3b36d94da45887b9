"""Which hosts the kill switch may call: an operator-set allowlist, checked twice.

A registration's `mitigation.kill_url` is written by anyone with the `write` scope, and the
worker POSTs to it when a breach fires: without a bound that is a request forgery into the
worker's network (cloud metadata at 169.254.169.254, the broker on localhost:9092, ...).

`DETECTOR_KILL_URL_ALLOWED_HOSTS` lists what may be called: host names (`flags.example.com`),
suffixes (`*.example.com`), IP addresses and networks (`10.20.0.0/16`). Nothing listed: no kill
URL is accepted. On top of the list:

- **at registration** (`KillUrlPolicy.url_problem`): http(s) only; a host outside the list is
  refused; so are numeric host forms other than a dotted quad (`0x7f000001`, `2130706433`,
  `0177.0.0.1`, `127.1`), and loopback, link-local, private, reserved and metadata hosts
  (`localhost`, `metadata.google.internal`, `169.254.169.254`, `fd00:ec2::254`) unless they are
  listed exactly (a host name, or an address inside a listed network; a `*.` suffix is not
  enough).
- **at send time**, the same check on the URL (the list may have changed), then every address
  the name resolves to (`GuardedResolver`, inside the connection itself, so the address checked
  is the address used): a special address is refused unless it is inside a listed network or
  the host name is listed exactly.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.internal", "metadata.platformequinix.com",
})
_NUMERIC_HOST_CHARS = frozenset("0123456789abcdefx.")


class KillUrlRefused(OSError):
    """The kill URL, or an address it resolves to, is not allowed."""


def _special(ip: IPAddress) -> str | None:
    """Why an address is not an ordinary public one, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None)
        if mapped is not None:
            return _special(mapped) or None
    for attr, why in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                      ("is_private", "a private address"), ("is_multicast", "a multicast address"),
                      ("is_unspecified", "an unspecified address"), ("is_reserved", "a reserved address")):
        if getattr(ip, attr):
            return why
    if not ip.is_global:
        return "not a public address"
    return None


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_trick(host: str) -> bool:
    """A host that the C resolver reads as an IPv4 address although it is not a dotted quad."""
    if not host or not set(host) <= _NUMERIC_HOST_CHARS or not any(c.isdigit() for c in host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


class KillUrlPolicy:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.names: set[str] = set()
        self.suffixes: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed:
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                self.suffixes.add(entry[1:])
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry)

    @classmethod
    def from_settings(cls, settings: Any) -> "KillUrlPolicy":
        return cls(getattr(settings, "kill_url_allowed_hosts", ()) or ())

    def _in_networks(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks if net.version == ip.version)

    def host_listed_exactly(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def url_problem(self, url: str) -> str | None:
        """Why `url` may not be a kill URL on this detector, or None."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            return f"is not a valid URL ({exc})"
        if parts.scheme not in ("http", "https"):
            return "must be an http or https URL"
        if not host:
            return "must name a host"
        if not (self.names or self.suffixes or self.networks):
            return ("no kill_url host is allowed on this detector: the operator lists the hosts a kill switch may "
                    "call in DETECTOR_KILL_URL_ALLOWED_HOSTS")
        ip = _literal_ip(host)
        if ip is None and _numeric_trick(host):
            return f"host {host!r} is a numeric address in a non-standard form: write the address as a dotted quad"
        if ip is not None:
            if self._in_networks(ip):
                return None
            why = _special(ip)
            return (f"host {host} is {why}: refused unless DETECTOR_KILL_URL_ALLOWED_HOSTS lists it" if why
                    else f"host {host} is not in DETECTOR_KILL_URL_ALLOWED_HOSTS")
        if self.host_listed_exactly(host):
            return None
        if host in METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
            return f"host {host} is a local or metadata name: refused unless DETECTOR_KILL_URL_ALLOWED_HOSTS lists it exactly"
        if any(host.endswith(sfx) for sfx in self.suffixes):
            return None
        return f"host {host} is not in DETECTOR_KILL_URL_ALLOWED_HOSTS"

    def address_problem(self, host: str, address: str) -> str | None:
        """Why the kill switch may not connect to `address` (resolved from `host`), or None."""
        ip = _literal_ip(address.split("%", 1)[0])
        if ip is None:
            return f"{host} resolved to {address!r}, not an IP address"
        if self._in_networks(ip) or self.host_listed_exactly(host):
            return None
        why = _special(ip)
        return f"{host} resolves to {ip}, {why}: refused (list the network in DETECTOR_KILL_URL_ALLOWED_HOSTS)" if why else None


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses addresses the policy does not allow."""

    def __init__(self, policy: KillUrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for entry in found:
            problem = self.policy.address_problem(host, str(entry.get("host")))
            if problem:
                raise KillUrlRefused(errno.EACCES, problem)  # strerror: aiohttp shows it in the error
        return found

    async def close(self) -> None:
        await self.inner.close()
