"""Merchant registry, merchant keys and the ANFU-SIG-V1 request-signature check."""
