"""PLACEHOLDER written by the lead so that the SDK imports while helper LOG works.
Helper LOG: overwrite this whole file with the real module (design §2 contract)."""

from __future__ import annotations

from typing import Any


def verify_receipt_bundle(bundle: dict[str, Any], keys: list[dict[str, Any]]) -> dict[str, Any]:
    raise NotImplementedError("receipt verification arrives with the transparency log")
