"""Platform PKI: certificate authority, profiles, revocation (book 3.5, 3.7)."""
