"""Server-side fetches of user-chosen URLs, safely (SSRF guard).

Used for http(s) file inputs (the API checks them at create time, the runner fetches them) and
by the webhook sender. The API is stable:

- `check_url(url, allow) -> list[IP]`: raises `BlockedURL` (a ValueError) with a sentence a user
  can read unless the URL is http(s), its host resolves, and every address it resolves to is
  public, or allow-listed. Returns the checked addresses.
- `fetch(url, *, allow, max_bytes, timeout, ssl_context=None) -> (bytes, content_type, filename)`:
  GET the URL connecting only to an address `check_url` approved (no second DNS lookup, so no
  DNS rebinding between check and connect), TLS verified against the URL's host name. Redirects
  (at most 5) are followed only after the target passes `check_url` too. More than `max_bytes`,
  or more than `timeout` seconds in all, raises `FetchError` (a ValueError).

Refused unless allow-listed: private (10/8, 172.16/12, 192.168/16, 100.64/10), loopback, link-local
(169.254/16 with the cloud metadata address 169.254.169.254, fe80::/10), unique-local (fc00::/7),
multicast, reserved, unspecified, and IPv4-mapped/6to4/NAT64 forms of those.

`allow` entries are CIDRs (`10.0.0.0/8`), single addresses, or host names (`localhost`,
`files.internal`): an allow-listed host name is reachable whatever it resolves to.
`COGPLANE_ALLOW_NETWORKS` (settings.allowed_networks) is the install's list.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable
from urllib.parse import unquote, urljoin, urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedURL(ValueError):  # noqa: N818 - reads better at call sites than BlockedURLError
    """The URL may not be fetched (scheme, unresolvable host, or a refused address)."""


class FetchError(ValueError):
    """The fetch failed (status, size, time, connection)."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_allow(allow: Iterable[str] | None) -> tuple[list[Network], set[str]]:
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in allow or ():
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return networks, hosts


def _embedded_v4(ip: IP) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IP) -> bool:
    """True if the address is globally routable unicast (none of the refused classes)."""
    inner = _embedded_v4(ip)
    if inner is not None:  # ::ffff:a.b.c.d, 2002:ab:cd::, 64:ff9b::a.b.c.d: judged by the IPv4 inside
        return is_public(inner)
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return ip.is_global


def _resolve(host: str, port: int) -> list[IP]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedURL(f"the host {host!r} could not be resolved") from exc
    seen: list[IP] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    if not seen:
        raise BlockedURL(f"the host {host!r} has no addresses")
    return seen


def check_url(url: str, allow: Iterable[str] | None = None) -> list[IP]:
    """Raise BlockedURL unless `url` may be fetched; returns the approved addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"{url!r} is not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise BlockedURL("only http and https URLs can be fetched")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise BlockedURL("the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    networks, hosts = _parse_allow(allow)
    addresses = _resolve(host, port)
    if host in hosts:
        return addresses
    for ip in addresses:
        if any(ip.version == net.version and ip in net for net in networks):
            continue
        inner = _embedded_v4(ip)
        if inner is not None and any(inner.version == n.version and inner in n for n in networks):
            continue
        if not is_public(ip):
            raise BlockedURL(
                f"the host {host!r} resolves to {ip}, a private, loopback, link-local or reserved address; "
                "such addresses are not fetched (COGPLANE_ALLOW_NETWORKS opens chosen ones)"
            )
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, ip: IP, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._ip), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, ip: IP, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip = ip
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((str(self._ip), self.port), self.timeout)
        # SNI and certificate checks use the URL's host name, not the address we connected to
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


_FILENAME = re.compile(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", re.IGNORECASE)


def _filename(url: str, disposition: str | None) -> str:
    if disposition:
        match = _FILENAME.search(disposition)
        if match:
            name = os.path.basename(unquote(match.group(1)).replace("\\", "/"))
            if name:
                return name[:200]
    name = os.path.basename(unquote(urlsplit(url).path))
    return (name or "file")[:200]


def fetch(
    url: str,
    *,
    allow: Iterable[str] | None = None,
    max_bytes: int,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[bytes, str | None, str]:
    """GET `url` safely: (body, content type, file name). See the module docstring."""
    allow = list(allow or ())
    deadline = time.monotonic() + timeout
    context = ssl_context or ssl.create_default_context()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        addresses = check_url(current, allow)
        parts = urlsplit(current)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"fetching {url} took longer than {timeout:g} s")
        last_error: Exception | None = None
        conn = None
        response = None
        for ip in addresses:
            conn = (
                _PinnedHTTPSConnection(host, ip, port, remaining, context)
                if parts.scheme == "https"
                else _PinnedHTTPConnection(host, ip, port, remaining)
            )
            try:
                conn.request(
                    "GET",
                    path,
                    headers={"User-Agent": "cogplane-fetch/1", "Accept": "*/*", "Accept-Encoding": "identity"},
                )
                response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                last_error = exc
                conn.close()
                conn = None
        if response is None or conn is None:
            raise FetchError(f"could not connect to {host}: {last_error}")
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("location")
                if not location:
                    raise FetchError(f"{current} redirected without a Location")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise FetchError(f"fetching {current} answered HTTP {response.status}")
            length = response.getheader("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"{current} is larger than the {max_bytes} byte limit")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"fetching {url} took longer than {timeout:g} s")
                conn.sock.settimeout(max(0.1, deadline - time.monotonic())) if conn.sock else None
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{current} is larger than the {max_bytes} byte limit")
                chunks.append(chunk)
            content_type = response.getheader("content-type")
            return b"".join(chunks), content_type, _filename(current, response.getheader("content-disposition"))
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"fetching {current} failed: {exc}") from exc
        finally:
            conn.close()
    raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times")
