"""Where the portal may send: `https://` to public addresses only.

An endpoint's URL is checked when it is saved (scheme, and a literal address) and again before
every attempt, after DNS resolution, so a name that later resolves to 127.0.0.1, 10.x, 169.254.x
(cloud metadata) or another internal address is refused, and the attempt connects to the
address that was checked (no second lookup to rebind). Redirects are never followed, so a
public URL cannot bounce a delivery inside. `NOTIFY_ALLOW_PRIVATE_URLS=true` (development, the
demo, the tests) lifts both rules.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class DestinationRefused(Exception):
    """The URL may not be sent to; the message says why, for the person who set it."""


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def url_check(url: str, *, resolve: bool) -> str | None:
    """Raise DestinationRefused unless `url` may be sent to (resolving its host if `resolve`).

    Returns the public address the host resolved to, for the caller to connect to that very
    address (a second lookup could answer otherwise: DNS rebinding); None when there is
    nothing to pin (a literal address, no resolution, or private URLs allowed)."""
    if settings.NOTIFY_ALLOW_PRIVATE_URLS:
        if urlsplit(url).scheme not in ("http", "https"):
            raise DestinationRefused("Use an http:// or https:// URL.")
        return None
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise DestinationRefused("Use an https:// URL: deliveries are never sent in clear.")
    host = parts.hostname
    if not host:
        raise DestinationRefused("The URL has no host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _private(host):
            raise DestinationRefused("That address is private, loopback or link-local.")
        return None
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise DestinationRefused("That host is not on the public internet.")
    if not resolve:
        return None
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"The host does not resolve ({exc}).") from None
    if any(_private(str(info[4][0])) for info in infos):
        raise DestinationRefused("The host resolves to a private, loopback or link-local address.")
    if not infos:
        raise DestinationRefused("The host does not resolve.")
    # One address is pinned, so prefer IPv4 (reachable from hosts without IPv6 routes).
    first = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return str(first[4][0]).split("%", 1)[0]


def pinned_url(url: str, address: str) -> str:
    """`url` with its host replaced by `address` (the port and path kept), to connect there
    while the Host header and TLS's server name stay the URL's own host."""
    parts = urlsplit(url)
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
