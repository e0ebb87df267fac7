"""Transparency log (RFC 9162) and receipts."""
