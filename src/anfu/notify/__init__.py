"""Signed, durable, retried notifications from the transactional outbox."""
