"""SSRF guard for outbound targets (callbacks and message routes).

Two layers, because a name checked at creation may resolve elsewhere later (DNS rebinding):
- at creation (`check_url`, `check_static`, raising `AppError("invalid_params")`, i.e. a 400): http(s) only,
  a host, no userinfo, at most 2048 characters; unless private targets are allowed, no IP literal in a
  refused range and no `localhost`.
- at send time (`GuardedResolver`, and `literal_refused` for IP-literal hosts, which aiohttp never hands to
  a resolver): every address a name resolves to is checked, refused ones are dropped, and when none is
  left the lookup fails with `SsrfBlocked`; the sender reports that as the error `ssrf_blocked`, which
  `retry.classify` fails at once instead of retrying.

"Refused" (`is_forbidden_ip`) is everything that is not a public unicast address: loopback, private,
link-local, shared (100.64/10), multicast, reserved, unspecified, documentation and benchmark ranges, and
IPv6 forms that embed such an IPv4 address (mapped, 6to4, NAT64).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from adapter.errors import AppError

MAX_URL_LENGTH = 2048
SCHEMES = ("http", "https")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ALSO_REFUSED = tuple(ipaddress.ip_network(n) for n in (
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "192.0.0.0/24",  # IETF protocol assignments (older Pythons call only its first /29 private)
    "192.88.99.0/24",  # 6to4 relay anycast
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments, Teredo included
    "2001:db8::/32", "3fff::/20",  # documentation
    "5f00::/16",  # SRv6 SIDs
))


class SsrfBlocked(OSError):
    """Every address of a target host is in a refused range. An OSError so that aiohttp wraps it like
    any other lookup failure (`ClientConnectorDNSError.os_error`)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} resolves only to refused addresses")
        self.host = host


def _invalid(msg: str) -> AppError:
    return AppError("invalid_params", f"url: {msg}")


def check_url(url: str) -> str:
    """Static shape of a target URL; returns it unchanged."""
    if not isinstance(url, str) or not url:
        raise _invalid("must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise _invalid("must not contain spaces or control characters")
    try:
        netloc = urlsplit(url).netloc
        parsed = URL(url)
    except ValueError:  # its text may quote the URL: a 400 never prints the value back
        raise _invalid("cannot be parsed as a URL") from None
    if parsed.scheme not in SCHEMES:
        raise _invalid("must start with http:// or https://")
    if "@" in netloc:
        raise _invalid("must not contain a user name or password")
    if not parsed.raw_host:
        raise _invalid("must name a host")
    if parsed.port == 0:
        raise _invalid("port must be between 1 and 65535")
    return url


def target_host(url: str) -> str:
    """The host as aiohttp will use it (IDNA-encoded, lower case, no brackets); '' when there is none."""
    try:
        return URL(url).raw_host or ""
    except ValueError:
        return ""


def check_static(url: str, allow_private: bool) -> str:
    """`check_url`, and unless `allow_private`, refuse hosts that are plainly internal."""
    check_url(url)
    host = target_host(url)
    if not allow_private and (is_local_name(host) or literal_refused(host)):
        raise _invalid("targets on loopback, private or reserved addresses are not allowed")
    return url


def is_local_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def looks_like_ip(host: str) -> bool:
    """The test aiohttp uses to skip name resolution: hosts that pass it never reach a resolver."""
    host = host.strip("[]")
    return ":" in host or (host.replace(".", "").isdigit())


def literal_refused(host: str) -> bool:
    """True for an IP-literal host in a refused range, and for anything that looks like an IP literal but
    is not a canonical one (`127.1`, `2130706433`): those never pass a resolver, so refuse them here."""
    if not looks_like_ip(host):
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return is_forbidden_ip(ip)


def is_forbidden_ip(ip: str | IP) -> bool:
    """True unless `ip` is a public unicast address. Unparsable strings are refused."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_ip(embedded)
        if ip.is_site_local:
            return True
    if any(ip in net for net in _ALSO_REFUSED):
        return True
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses (unless `allow_private`) and raises `SsrfBlocked`
    when none is left. Build it inside a running loop (the default inner resolver needs one)."""

    def __init__(self, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self.allow_private:
            return found
        kept = [r for r in found if not is_forbidden_ip(r["host"])]
        if not kept:
            raise SsrfBlocked(host)
        return kept

    async def close(self) -> None:
        await self._inner.close()
