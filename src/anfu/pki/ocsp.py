"""The OCSP responder (RFC 6960): answers signed by each issuing CA's delegated OCSP signer,
pre-signed and cached until half their validity has passed.

The cache is keyed by the request's bytes, so a repeated request (what relying parties
send) costs one dictionary look-up. A request with a nonce is answered freshly and never
cached (the nonce is echoed). Revocations invalidate: every issuing CA carries a revocation
generation in the database; each process reads the generations at most every
``GENERATION_CHECK_S`` and drops the answers of a CA whose generation moved (the process
that revokes drops them at once)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anfu.crypto import x509 as X
from anfu.db.pki_store import SqlPkiStore
from anfu.pki.authority import Authority, _parsed, authority
from anfu.pki.model import CaRecord

if TYPE_CHECKING:
    from anfu.bootstrap import Platform

GENERATION_CHECK_S = 0.2
MAX_CACHED = 100_000
MAX_REQUEST_BYTES = 4096


@dataclass
class _Issuer:
    ca: CaRecord
    hashes: dict[str, tuple[bytes, bytes]]


class Responder:
    def __init__(self, auth: Authority) -> None:
        self.auth = auth
        self.platform = auth.platform
        self._cache: dict[bytes, tuple[float, str, bytes]] = {}  # body → (refresh, ca, der)
        self._gens: dict[str, int] = {}
        self._checked = -1.0
        self._issuers: list[_Issuer] = []
        self._signers: dict[str, CaRecord] = {}

    # --- state ---
    def _refresh(self, now: float) -> None:
        tick = time.monotonic()
        if tick - self._checked < GENERATION_CHECK_S:
            return
        self._checked = tick
        gens = self.platform.read(lambda conn: SqlPkiStore(conn).generations())
        if gens != self._gens or any(s.not_after - now < (s.not_after - s.not_before) / 3
                                     for s in self._signers.values()):
            changed = {ca for ca, g in gens.items() if self._gens.get(ca) != g}
            self._gens = gens
            self._load(now)
            if changed:
                self._cache = {k: v for k, v in self._cache.items() if v[1] not in changed}

    def _load(self, now: float) -> None:
        self.auth.ensure_ocsp_signers(now=now)
        cas = self.auth.cas()
        self._issuers = [_Issuer(c, {}) for c in cas if c.kind == "issuing"]
        signers: dict[str, CaRecord] = {}
        for c in cas:
            if c.kind == "ocsp" and c.parent_id is not None:
                signers[c.parent_id] = c  # the newest wins (ordered by creation)
        self._signers = signers

    def invalidate(self) -> None:
        """Drop everything now (this process revoked something)."""
        self._cache.clear()
        self._checked = -1.0

    def _issuer(self, query: X.OcspQuery) -> _Issuer | None:
        for issuer in self._issuers:
            hashes = issuer.hashes.get(query.hash_alg)
            if hashes is None:
                hashes = X.issuer_hashes(_parsed(issuer.ca.cert_pem), query.hash_alg)
                issuer.hashes[query.hash_alg] = hashes
            if hashes == (query.issuer_name_hash, query.issuer_key_hash):
                return issuer
        return None

    # --- answers ---
    def answer(self, body: bytes, now: float) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest (never raises on bad input)."""
        self._refresh(now)
        hit = self._cache.get(body)
        if hit is not None and now < hit[0]:
            return hit[2]
        if not body or len(body) > MAX_REQUEST_BYTES:
            return X.ocsp_error("malformed")
        try:
            query = X.parse_ocsp_request(body)
        except X.X509Invalid:
            return X.ocsp_error("malformed")
        try:
            issuer = self._issuer(query)
        except (ValueError, TypeError):
            return X.ocsp_error("malformed")
        if issuer is None or issuer.ca.ca_id not in self._signers:
            return X.ocsp_error("unauthorized")
        der = self._sign(query, issuer.ca, now)
        if query.nonce is None:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            hours = self.auth.settings.pki_crl_hours
            self._cache[body] = (now + hours * 1800, issuer.ca.ca_id, der)
        return der

    def _sign(self, query: X.OcspQuery, ca: CaRecord, now: float) -> bytes:
        serial = format(query.serial, "x")
        row: dict[str, Any] | None = self.platform.read(
            lambda conn: SqlPkiStore(conn).status(serial))
        if row is None or row["ca_id"] != ca.ca_id:
            status, revoked_at, reason = "unknown", None, None
        elif row["revoked_at"] is not None:
            status, revoked_at, reason = ("revoked", row["revoked_at"],
                                          row["revocation_reason"])
        else:
            status, revoked_at, reason = "good", None, None
        signer = self._signers[ca.ca_id]
        hours = self.auth.settings.pki_crl_hours
        try:
            return X.build_ocsp_response(
                query=query, status=status, revoked_at=revoked_at, reason=reason,
                this_update=now, next_update=now + hours * 3600,
                responder=_parsed(signer.cert_pem), signer=self.auth.signer(signer.key_id))
        except X.X509Invalid:
            return X.ocsp_error("malformed")


def responder(platform: Platform) -> Responder:
    found = platform.extras.get("pki.ocsp")
    if found is None:
        found = Responder(authority(platform))
        platform.extras["pki.ocsp"] = found
    return found
