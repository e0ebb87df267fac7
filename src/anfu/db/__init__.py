"""Persistence: tables, repositories, the unit of work and the single-writer group commit."""
