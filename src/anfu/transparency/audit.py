"""The auditor's check of the whole log (``anfu verify log --auditor``): given every entry
of a signed tree with the private bodies and salts (the admin zone's ``GET
/v1/log/entries``), each committed entry's body opens its commitment, and the leaf hashes of
all the entries rebuild the tree head's signed root. Pure, like ``verify.py``."""

from __future__ import annotations

from typing import Any

from anfu.crypto.merkle_hash import digests_equal, leaf_hash
from anfu.transparency.merkle import MerkleTree
from anfu.transparency.model import ENTRY_V2, EntryInvalid, parse_entry, unb64
from anfu.transparency.verify import Json, VerificationFailed, verify_commitment, verify_sth


def verify_audited_entries(entries: list[Any], sth: Json, keys: list[Json]) -> Json:
    """``entries`` (leaves 0..tree_size-1 of ``sth``, in order, as the auditor route gives
    them) are the signed tree and every commitment opens. Returns counts; raises
    VerificationFailed naming the check (``audit_entries``, ``audit_entry``,
    ``audit_commitment``, ``audit_root``) and the leaf."""
    head = verify_sth(sth, keys)
    size = head["tree_size"]
    if len(entries) != size:
        raise VerificationFailed("audit_entries", f"{len(entries)} entries for a tree of"
                                 f" size {size}")
    hashes = []
    committed = 0
    for index, item in enumerate(entries):
        if not isinstance(item, dict) or item.get("leaf_index") != index:
            raise VerificationFailed("audit_entries", f"entry {index} is missing or out of"
                                     " order")
        try:
            data = unb64(item.get("leaf_input"), "leaf_input")
            parsed = parse_entry(data)
        except EntryInvalid as exc:
            raise VerificationFailed("audit_entry", f"leaf {index}: {exc}") from None
        if parsed["kind"] != item.get("kind"):
            raise VerificationFailed("audit_entry", f"leaf {index}: the kind differs from"
                                     " the entry's")
        if parsed["version"] == ENTRY_V2:
            try:
                verify_commitment(parsed, item.get("body"), item.get("salt"),
                                  "audit_commitment")
            except VerificationFailed as exc:
                raise VerificationFailed(exc.check, f"leaf {index}: {exc.detail}") from None
            committed += 1
        hashes.append(leaf_hash(data))
    tree = MerkleTree()
    tree.append(b"".join(hashes))
    if not digests_equal(tree.root(size), head["root_hash"]):
        raise VerificationFailed("audit_root", f"the {size} entries do not make the signed"
                                 " root hash")
    return {"tree_size": size, "committed": committed, "public": size - committed,
            "key_id": head["key_id"]}
