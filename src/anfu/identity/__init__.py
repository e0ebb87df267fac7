"""Customers: accounts, passwords, sessions (access and rotating refresh tokens)."""
