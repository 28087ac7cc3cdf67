"""The SSRF guard: requests a tenant aims (webhooks) may only reach public addresses.

A target is checked after DNS resolution, every address it resolves to, and
the request then goes to the address that was checked (so a second lookup
cannot answer differently), with the host name kept for the Host header and
TLS. Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], list[str]]


class RefusedTarget(Exception):
    """The target is not a public address (and private ones are not allowed)."""


def kind_of(address: IPAddress) -> str | None:
    """Why an address is not a public one, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, matches in (
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata included)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if matches:
            return kind
    return None if address.is_global else "non-public"


def resolve_all(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """Where to connect (`address`), and the name the request is for (`host`)."""

    url: str  # the URL with the checked address in place of the host name
    host: str  # for TLS (SNI and the certificate check)
    host_header: str  # host[:port], for the Host header
    address: str


@dataclass(frozen=True)
class EgressGuard:
    allow_private: bool = False
    resolve: Resolve = resolve_all

    def check(self, url: str) -> Target:
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise RefusedTarget(f"only http(s) URLs with a host can be called: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a) for a in self.resolve(host, port)]
            except OSError as exc:
                raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
        if not self.allow_private:
            for address in addresses:
                if (kind := kind_of(address)) is not None:
                    raise RefusedTarget(
                        f"{host} resolves to {address}, a {kind} address: refused "
                        "(WEBHOOK_ALLOW_PRIVATE=true allows private targets)"
                    )
        chosen = str(addresses[0])
        netloc = f"[{chosen}]" if ":" in chosen else chosen
        if parts.port:
            netloc += f":{parts.port}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return Target(parts._replace(netloc=netloc).geturl(), host, host_header, chosen)
