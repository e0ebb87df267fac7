"""Answers the framework would make on its own are problems too (issue 9 §2): a 405 names
the methods the path serves, an unreadable body gets a named code."""

from __future__ import annotations

import httpx

from tests.support import RunningPlatform


def test_405_is_a_problem_with_allow(platform_urls: RunningPlatform) -> None:
    reply = httpx.delete(f"{platform_urls.mobile}/v1/users")
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "method_not_allowed" and reply.headers["allow"] == "POST"


def test_ocsp_405_names_only_what_the_path_serves(platform_urls: RunningPlatform) -> None:
    for method, path, allow in (("GET", "/pki/ocsp", "POST"), ("PUT", "/pki/ocsp", "POST"),
                                ("POST", "/pki/ocsp/MAo=", "GET")):
        reply = httpx.request(method, platform_urls.mobile + path)
        assert reply.status_code == 405, (method, path)
        assert reply.headers["allow"] == allow
        assert reply.json()["code"] == "method_not_allowed"


def test_a_body_that_is_not_utf8_gets_a_named_code(platform_urls: RunningPlatform) -> None:
    reply = httpx.post(f"{platform_urls.mobile}/v1/users", content=b'{"phone": "\xff\xfe"}',
                       headers={"Content-Type": "application/json"})
    assert (reply.status_code, reply.json()["code"]) == (400, "body_not_utf8_json")
    assert reply.headers["content-type"] == "application/problem+json"


def test_the_ca_ids_are_public(platform_urls: RunningPlatform) -> None:
    cas = httpx.get(f"{platform_urls.mobile}/pki/cas").json()["cas"]
    kinds = {ca["kind"] for ca in cas}
    assert kinds == {"root", "issuing"}
    for ca in cas:
        der = httpx.get(platform_urls.mobile + ca["certificate_url"])
        assert der.headers["content-type"] == "application/pkix-cert"
        if ca["crl_url"]:
            assert httpx.get(platform_urls.mobile + ca["crl_url"]).status_code == 200
