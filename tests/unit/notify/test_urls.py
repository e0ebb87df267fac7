"""The notify-URL policy on parsed values: the form of a URL, and the addresses it may
lead to (with and without an allow-list, and the platform's own listeners)."""

from __future__ import annotations

import ipaddress

import pytest

from anfu.notify.urls import (
    AddressPolicy,
    Listener,
    NotifyAddressForbidden,
    NotifyUrlInvalid,
    parse_notify_url,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_a_url_is_read_as_the_http_client_sends_it() -> None:
    target = parse_notify_url("HTTPS://Shop.Example.COM/anfu/notify?shop=1&x=%41")
    assert (target.scheme, target.host, target.port, target.target) == (
        "https", "shop.example.com", 443, "/anfu/notify?shop=1&x=%41")
    assert parse_notify_url("http://[2606:4700::1111]:8080").target == "/"
    assert parse_notify_url("http://[2606:4700::1111]:8080").literal == ip("2606:4700::1111")
    assert parse_notify_url("http://93.184.215.14/a{b}").target == "/a%7Bb%7D"  # as sent


@pytest.mark.parametrize("url", [
    "http://h.example/\r\nX: 1", "http://h.example/\n", "http://h.example/ x",
    "http://h.example/\x7f", "http://h\u00e9.example/", "http://h.example/\u2028",
    "http://u@h.example/", "http://u:p@h.example/", "http://:@h.example/",
    "http://h.example:0/", "http://h.example:65536/", "http://h.example:-1/", "http:///p",
    "file:///etc/passwd", "gopher://h.example/", "ws://h.example/", "http:h.example/",
    "h.example/x", "http://h_x.example/", "http://-h.example/", "http://h%2e.example/",
    "http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://0177.0.0.1/",
    "http://1.2.3.0x4/", "http://[::1%25lo]/", "http://" + "a." * 130 + "example/",
    "http://h.example/" + "p" * 1024,
])
def test_malformed_or_ambiguous_urls_are_refused(url: str) -> None:
    with pytest.raises(NotifyUrlInvalid) as refused:
        parse_notify_url(url)
    assert refused.value.code == "invalid_notify_url"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.9", "::1", "0.0.0.0", "::", "10.0.0.1", "172.31.255.255",
    "192.168.0.1", "100.64.0.1", "100.127.255.254", "169.254.169.254", "169.254.0.1",
    "fe80::1", "fc00::1", "fd00:ec2::254", "224.0.0.1", "239.255.255.250", "ff02::1",
    "240.0.0.1", "255.255.255.255", "198.18.0.1", "198.19.255.255", "192.0.0.8",
    "192.0.2.1", "198.51.100.1", "203.0.113.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1",
    "2001::1", "2001:db8::1", "100::1", "fec0::1",
])
def test_special_addresses_are_refused(address: str) -> None:
    assert AddressPolicy().refusal(ip(address), 443) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111",
                                     "::ffff:93.184.215.14"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(ip(address), 443) is None


def test_the_allow_list_opens_a_range_but_not_listeners_metadata_or_unspecified() -> None:
    policy = AddressPolicy(
        allow_nets=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16"),
                    ipaddress.ip_network("0.0.0.0/0")),
        own_listeners=(Listener(ip("127.0.0.1"), 8002), Listener(None, 8001)),
        is_local=lambda a: a.is_loopback or a == ip("192.0.2.7"))
    assert policy.refusal(ip("127.0.0.1"), 9000) is None
    assert policy.refusal(ip("127.0.0.1"), 8002) is not None  # the admin listener
    assert policy.refusal(ip("::ffff:127.0.0.1"), 8002) is not None
    assert policy.refusal(ip("127.0.0.2"), 8002) is None  # not where it listens
    assert policy.refusal(ip("127.0.0.9"), 8001) is not None  # wildcard: any local address
    assert policy.refusal(ip("192.0.2.7"), 8001) is not None
    assert policy.refusal(ip("192.0.2.8"), 8001) is None
    assert policy.refusal(ip("169.254.169.254"), 80) is not None  # metadata, allow-listed
    assert policy.refusal(ip("0.0.0.0"), 9000) is not None
    assert policy.refusal(ip("10.0.0.1"), 80) is None  # inside 0.0.0.0/0
    assert policy.refusal(ip("::1"), 80) is not None  # the IPv4 allow-list is not IPv6's


def test_a_name_is_refused_if_any_answer_is() -> None:
    target = parse_notify_url("https://shop.example/n")
    AddressPolicy().check(target, [ip("93.184.215.14")])
    with pytest.raises(NotifyAddressForbidden) as refused:
        AddressPolicy().check(target, [ip("93.184.215.14"), ip("10.0.0.1")])
    assert refused.value.code == "notify_url_forbidden_address"
    assert "10.0.0.1" not in refused.value.detail  # the merchant learns no inside address
