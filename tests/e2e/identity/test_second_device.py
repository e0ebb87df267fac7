"""A phone already bound to its key registers another device's key (e.g. the customer's
tablet): the request is signed by the phone's key (DPoP) and the new key proves itself in
Device-Key-Proof; the phone's session stays bound to the phone."""

from __future__ import annotations

import httpx

from anfu.crypto.jose import DeviceKey
from tests.e2e.identity.wire import device_body, problem
from tests.support import RunningPlatform, new_customer


def test_a_bound_phone_registers_a_tablet_key_only_with_its_proof(
        platform_urls: RunningPlatform) -> None:
    phone = new_customer(platform_urls)
    tablet = DeviceKey.generate("EdDSA")
    url = f"{platform_urls.mobile}/v1/devices"
    registration = device_body(tablet, name="tablet", key_storage="software")

    unproved = httpx.post(url, json=registration,
                          headers=phone.auth_headers("POST", "/v1/devices"))
    problem(unproved, 401, "dpop_required")
    by_other_key = httpx.post(url, json=registration, headers={
        **phone.auth_headers("POST", "/v1/devices"),
        "Device-Key-Proof": DeviceKey.generate("EdDSA").dpop_proof("POST", url)})
    assert by_other_key.json()["code"] == "dpop_key_mismatch"

    proved = httpx.post(url, json=registration, headers={
        **phone.auth_headers("POST", "/v1/devices"),
        "Device-Key-Proof": tablet.dpop_proof("POST", url)})
    assert proved.status_code == 201, proved.text
    assert proved.json()["jkt"] == tablet.public.jkt and "session_bound" not in proved.json()
    # The phone's own session is still bound to the phone's key.
    assert phone.me()["device_id"] == phone.device_id
    assert {d["name"] for d in phone.devices()} == {"test phone", "tablet"}
