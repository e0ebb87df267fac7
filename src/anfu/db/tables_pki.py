"""Tables of the pki domain (SQLAlchemy Core), on the shared metadata."""

from __future__ import annotations

from anfu.db.tables import metadata  # noqa: F401
