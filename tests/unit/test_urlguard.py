"""SSRF guard: URL shape, refused address ranges, static checks and the guarded resolver."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from adapter.delivery.urlguard import (
    MAX_URL_LENGTH,
    GuardedResolver,
    SsrfBlocked,
    check_static,
    check_url,
    is_forbidden_ip,
    literal_refused,
    target_host,
)
from adapter.errors import AppError


@pytest.mark.parametrize("url", [
    "http://example.com/hook", "https://example.com:8443/a/b?c=d", "HTTPS://Example.COM/", "http://10.0.0.1/x",
    "http://[2001:4860::1]/", "https://bücher.example/", "http://h/#frag",
])
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("", "non-empty"), ("ftp://example.com/", "http"), ("javascript:alert(1)", "http"),
    ("example.com/x", "http"), ("//example.com/x", "http"), ("file:///etc/passwd", "http"),
    ("http:///x", "host"),
    ("http://:80/", "parsed"), ("http://user:pw@example.com/", "user"), ("http://@example.com/", "user"),
    ("http://a b/", "spaces"), ("http://example.com/\n", "control"), ("http://example.com:99999/", "parsed"),
    ("http://example.com:0/", "port"), ("http://[::1/", "parsed"), ("http://h\\@evil/", "parsed"),
    ("http://example.com/" + "a" * MAX_URL_LENGTH, "2048"),
])
def test_check_url_rejects(url: str, why: str) -> None:
    with pytest.raises(AppError) as info:
        check_url(url)
    assert info.value.code == "invalid_params" and info.value.status == 400
    assert info.value.msg.startswith("url: ") and why in info.value.msg


def test_check_url_rejects_non_strings() -> None:
    with pytest.raises(AppError):
        check_url(None)  # type: ignore[arg-type]


def test_max_length_is_inclusive() -> None:
    url = "http://example.com/"
    url += "a" * (MAX_URL_LENGTH - len(url))
    assert check_url(url) == url


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "192.0.0.8",
    "192.88.99.1", "2001::1", "64:ff9b:1::a", "3fff::1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "2002:7f00:1::1",
    "2002:a00:1::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "not an ip", "",
])
def test_forbidden_ips(ip: str) -> None:
    assert is_forbidden_ip(ip)


@pytest.mark.parametrize("ip", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1", "11.0.0.1",
    "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808",
])
def test_public_ips(ip: str) -> None:
    assert not is_forbidden_ip(ip)
    assert not is_forbidden_ip(ipaddress.ip_address(ip.split("%")[0]))


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_agrees_with_ipv4(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert is_forbidden_ip(mapped) == is_forbidden_ip(ip)


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="127.0.0.0/8")
       | st.ip_addresses(v=4, network="100.64.0.0/10") | st.ip_addresses(v=4, network="169.254.0.0/16")
       | st.ip_addresses(v=6, network="fc00::/7") | st.ip_addresses(v=6, network="fe80::/10"))
def test_whole_ranges_are_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert is_forbidden_ip(ip)


@pytest.mark.parametrize("host", ["127.0.0.1", "::ffff:7f00:1", "[::1]", "127.1", "2130706433", "10.0.0.1"])
def test_literal_refused(host: str) -> None:
    assert literal_refused(host)


@pytest.mark.parametrize("host", ["8.8.8.8", "example.com", "localhost", "0x7f000001", "2606:4700::1111"])
def test_literal_not_refused(host: str) -> None:
    """Names (even odd ones like 0x7f000001) are left to the resolver, which sees what they resolve to."""
    assert not literal_refused(host)


def test_target_host_is_what_aiohttp_uses() -> None:
    assert target_host("http://[::ffff:127.0.0.1]:80/x") == "::ffff:7f00:1"
    assert target_host("http://bücher.example/") == "xn--bcher-kva.example"
    assert target_host("http://EXAMPLE.com/") == "example.com"
    assert target_host("http://[::1/") == ""


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/x", "http://localhost/", "http://LOCALHOST./", "http://api.localhost/", "http://[::1]/",
    "http://[::ffff:10.0.0.1]/", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://127.1/",
    "http://2130706433/", "http://１２７.0.0.1/", "http://100.64.1.1/",
])
def test_check_static_refuses_internal_targets(url: str) -> None:
    with pytest.raises(AppError) as info:
        check_static(url, allow_private=False)
    assert info.value.code == "invalid_params" and "not allowed" in info.value.msg
    assert check_static(url, allow_private=True) == url


def test_check_static_keeps_shape_rules_when_allowed() -> None:
    with pytest.raises(AppError, match="http"):
        check_static("gopher://127.0.0.1/", allow_private=True)
    assert check_static("https://example.com/hook", allow_private=False) == "https://example.com/hook"


def result(host: str, family: socket.AddressFamily = socket.AF_INET) -> ResolveResult:
    return ResolveResult(hostname="name.test", host=host, port=80, family=family, proto=0, flags=0)


class FixedResolver(AbstractResolver):
    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts
        self.closed = False

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [result(h) for h in self.hosts]

    async def close(self) -> None:
        self.closed = True


async def resolve(hosts: list[str], allow_private: bool) -> list[str]:
    inner = FixedResolver(hosts)
    guard = GuardedResolver(allow_private, inner)
    try:
        return [r["host"] for r in await guard.resolve("name.test", 80)]
    finally:
        await guard.close()
        assert inner.closed


async def test_resolver_drops_refused_addresses() -> None:
    got = await resolve(["10.0.0.5", "93.184.216.34", "::1", "2606:4700::1"], False)
    assert got == ["93.184.216.34", "2606:4700::1"]


async def test_resolver_raises_when_nothing_is_left() -> None:
    with pytest.raises(SsrfBlocked) as info:
        await resolve(["127.0.0.1", "::1", "169.254.169.254"], False)
    assert isinstance(info.value, OSError) and info.value.host == "name.test"


async def test_resolver_allows_everything_when_allowed() -> None:
    assert await resolve(
["127.0.0.1", "::1"], True) == ["127.0.0.1", "::1"]


async def test_resolver_default_inner_resolves_localhost() -> None:
    guard = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(SsrfBlocked):
            await guard.resolve("localhost", 80)
        allowed = GuardedResolver(allow_private=True)
        assert "127.0.0.1" in [r["host"] for r in await allowed.resolve("localhost", 80)]
        await allowed.close()
    finally:
        await guard.close()
