"""Bound devices: registering a phone's key (with its key attestation when the phone offers
one), listing, renaming and revoking devices, and their security notices.

A key counts as hardware-bound (``hwk``, level 3) only when its Android Key Attestation
verifies (``crypto/attestation``): the app first asks for an attestation challenge, has the
Keystore generate the key with that challenge, and sends the certificate chain with the
registration. Without a chain the key is ``swk`` whatever ``key_storage`` claims.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field, StringConstraints
from starlette.responses import Response

from anfu.api.auth import AuthContext, Authenticator, auth_dependency
from anfu.api.common import json_response
from anfu.api.identity_kit import IdentityKit
from anfu.api.schemas import Body, DeviceRename, Id, NewDevice
from anfu.crypto.attestation import (
    AttestationInvalid,
    AttestationRoot,
    KeyAttestation,
    load_roots,
    spki_of_jwk,
    verify_android_key,
)
from anfu.crypto.jose import DevicePublicKey, JwkInvalid, parse_public_jwk
from anfu.crypto.sandbox_keystore import ROOT_FILE, SandboxKeystore, sandbox_keystore_folder
from anfu.db.auth_store import SqlAuthStore
from anfu.db.factor_store import SqlFactorStore
from anfu.db.uow import SqlUnitOfWork, new_id
from anfu.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from anfu.identity.challenges import ChallengeKind, Requirement, new_challenge
from anfu.identity.devices import Device, DeviceReport
from anfu.pki import service as pki

MAX_DEVICES = 10
ATTESTATION_OPERATION = "device.attest"


class Attestation(Body):
    format: Literal["android-key"]
    challenge_id: Id
    # leaf first, each certificate base64 DER
    certificate_chain: Annotated[list[Annotated[str, StringConstraints(
        min_length=16, max_length=8192)]], Field(min_length=1, max_length=8)]


class AttestedDevice(NewDevice):
    attestation: Attestation | None = None


def attestation_roots(setting: str) -> tuple[AttestationRoot, ...]:
    paths = [Path(p) for p in setting.split(":") if p.strip()]
    return load_roots(paths)


def build_router(kit: IdentityKit, authenticator: Authenticator) -> APIRouter:
    platform = kit.platform
    router = APIRouter(prefix="/v1")
    current = Depends(auth_dependency(authenticator))
    roots = attestation_roots(kit.settings.attestation_roots)
    if kit.settings.sandbox_routes:
        # Development: the sandbox phone Keystore (anfu demo's) is an attestation root too.
        folder = sandbox_keystore_folder(kit.settings.home)
        SandboxKeystore.in_folder(folder)  # made on first start
        roots = (*roots, *load_roots([folder / ROOT_FILE]))

    def audit(uow: SqlUnitOfWork, name: str, c: AuthContext, **detail: Any) -> None:
        SqlAuthStore(uow.conn).audit(name, now=uow.now, user_id=c.user_id,
                                     session_id=c.session_id, device_id=c.device_id,
                                     client_address=c.client_address, **detail)

    @router.post("/devices/attestation-challenge", status_code=201,
                 summary="A challenge for the Keystore to attest a new key with")
    async def attestation_challenge(c: AuthContext = current) -> Response:
        await authenticator.require(c, "device.add")
        ch = new_challenge(ChallengeKind.DEVICE_ATTESTATION, user_id=c.user_id,
                           operation=ATTESTATION_OPERATION, requirement=Requirement(acr=3),
                           client_address=c.client_address, now=platform.clock(),
                           session_id=c.session_id)
        await platform.write(lambda uow: SqlAuthStore(uow.conn).insert_challenge(ch))
        return json_response({"challenge_id": ch.challenge_id, "challenge": ch.nonce,
                              "expires_at": ch.expires_at}, 201)

    def verified(c: AuthContext, key: DevicePublicKey,
                 attestation: Attestation) -> KeyAttestation:
        ch = platform.read(lambda conn: SqlAuthStore(conn).challenge(attestation.challenge_id))
        if (ch is None or ch.kind is not ChallengeKind.DEVICE_ATTESTATION
                or ch.user_id != c.user_id or ch.session_id != c.session_id):
            raise AuthenticationFailed("no such attestation challenge; ask for a new one",
                                       code="challenge_expired")
        ch.check_open(platform.clock())
        try:
            chain = [base64.b64decode(cert, validate=True)
                     for cert in attestation.certificate_chain]
            return verify_android_key(chain, challenge=ch.nonce.encode("ascii"),
                                      public_key_spki=spki_of_jwk(key.jwk), roots=roots,
                                      now=platform.clock())
        except binascii.Error:
            raise InvalidRequest("certificate_chain: each certificate is base64 DER",
                                 code="attestation_malformed") from None
        except AttestationInvalid as exc:
            raise InvalidRequest(f"key attestation refused: {exc}; register without an"
                                 " attestation to bind a software key",
                                 code=f"attestation_{exc.check}") from None

    @router.post("/devices", status_code=201,
                 summary="Bind this phone: register its key (DPoP proof by the new key)")
    async def add_device(body: AttestedDevice, request: Request, c: AuthContext = current,
                         dpop: str | None = Header(None, alias="DPoP"),
                         new_key_proof: str | None = Header(None, alias="Device-Key-Proof"),
                         ) -> Response:
        await authenticator.require(c, "device.add")
        try:
            key = parse_public_jwk(body.public_jwk)
        except JwkInvalid as exc:
            raise InvalidRequest(f"public_jwk: {exc}", code="invalid_device_key") from None
        # The request proves the new key is held: a DPoP proof it signed. A session already
        # bound to another key signs its DPoP header with that one, so the new key's proof
        # travels in Device-Key-Proof instead.
        await authenticator.verify_proof(request, dpop if c.jkt is None else new_key_proof,
                                         jkt=key.jkt)
        report = DeviceReport(name=body.name, app_id=body.app_id, app_version=body.app_version,
                              app_cert_sha256=body.app_cert_sha256, os=body.os,
                              rooted=body.rooted, emulator=body.emulator,
                              key_storage=body.key_storage).checked()
        attested = None if body.attestation is None else verified(c, key, body.attestation)

        def add(uow: SqlUnitOfWork) -> dict[str, Any]:
            factors = SqlFactorStore(uow.conn)
            store = SqlAuthStore(uow.conn)
            if body.attestation is not None and not store.complete(
                    body.attestation.challenge_id, uow.now):
                raise AuthenticationFailed("this attestation challenge was already used",
                                           code="challenge_expired")
            if factors.device_by_jkt(key.jkt) is not None:
                raise Conflict("this key is already registered", code="device_key_taken")
            if len(factors.devices_of(c.user_id)) >= MAX_DEVICES:
                raise Conflict(f"at most {MAX_DEVICES} devices; revoke one first",
                               code="too_many_devices")
            others = [d.device_id for d in factors.devices_of(c.user_id)]
            device = Device(device_id=new_id("d"), user_id=c.user_id, alg=key.alg,
                            public_jwk=dict(key.jwk), jkt=key.jkt, report=report,
                            created_at=uow.now,
                            attestation=attested.security_level if attested else None)
            factors.insert_device(device)
            if attested is not None:
                factors.insert_attestation(device.device_id, attested, uow.now)
            out = device.public()
            if c.jkt is None:
                # This session now lives on the new device: bind it to the key.
                store.bind_session(c.session_id, device.device_id, key.jkt)
                out["session_bound"] = True
            store.notify_devices(others, "device_added",
                                 f"A new device \"{report.name}\" was added to your anfu"
                                 " account. If this was not you, revoke it now.", uow.now)
            audit(uow, "identity:device:added", c, new_device_id=device.device_id,
                  key_storage=report.key_storage, rooted=report.rooted,
                  emulator=report.emulator, app_id=report.app_id,
                  attestation=attested.security_level if attested else None,
                  amr=device.amr)
            return out

        return json_response(await platform.write(add), 201)

    @router.get("/devices", summary="My bound devices")
    async def list_devices(c: AuthContext = current,
                           include_revoked: bool = Query(False)) -> Response:
        await authenticator.require(c, "device.list")
        devices = platform.read(lambda conn: SqlFactorStore(conn).devices_of(
            c.user_id, active_only=not include_revoked))
        return json_response({"devices": [{**d.public(), "current": d.device_id == c.device_id}
                                          for d in devices]})

    def own_device(c: AuthContext, device_id: str) -> Device:
        device = platform.read(lambda conn: SqlFactorStore(conn).device(device_id))
        if device is None or device.user_id != c.user_id:
            raise NotFound(f"no device {device_id}", code="device_not_found")
        return device

    @router.patch("/devices/{device_id}", summary="Rename a device")
    async def rename_device(device_id: str, body: DeviceRename,
                            c: AuthContext = current) -> Response:
        await authenticator.require(c, "device.rename")
        own_device(c, device_id)
        name = DeviceReport(body.name, "x", "1", "0" * 64, "x", False, False,
                            "software").checked().name
        await platform.write(lambda uow: SqlFactorStore(uow.conn).rename_device(device_id,
                                                                                 name))
        return json_response(own_device(c, device_id).public())

    @router.delete("/devices/{device_id}", status_code=204,
                   summary="Revoke a device (a lost phone): its sessions end at once")
    async def revoke_device(device_id: str, c: AuthContext = current) -> Response:
        await authenticator.require(c, "device.revoke")
        own_device(c, device_id)

        def revoke(uow: SqlUnitOfWork) -> None:
            if not SqlFactorStore(uow.conn).revoke_device(device_id, uow.now):
                return
            ended = SqlAuthStore(uow.conn).revoke_sessions(reason="device_revoked",
                                                           now=uow.now, device_id=device_id)
            # the device's certificates go with it (same transaction)
            pki.revoke_device_certificates(uow.conn, device_id,
                                           reason="cessation_of_operation", now=uow.now)
            audit(uow, "identity:device:revoked", c, revoked_device_id=device_id,
                  sessions_ended=ended)

        await platform.write(revoke)
        return Response(status_code=204)

    @router.get("/devices/current/notices", summary="Security notices for this device")
    async def notices(c: AuthContext = current, after: int = Query(0, ge=0),
                      limit: int = Query(50, ge=1, le=200)) -> Response:
        await authenticator.require(c, "device.notices")
        if c.device_id is None:
            raise InvalidRequest("this session is not on a bound device",
                                 code="device_not_bound")
        device_id = c.device_id
        rows = platform.read(lambda conn: SqlAuthStore(conn).notices(device_id, after, limit))
        return json_response({"notices": rows})

    return router
