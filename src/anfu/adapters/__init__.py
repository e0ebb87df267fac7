"""Parties outside the platform. Each has a documented base class and a sandbox
implementation that behaves like the real party (latency, failures, signed replies)."""
