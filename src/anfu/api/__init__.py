"""One FastAPI app per security zone: mobile (customers), merchant (signed API), admin."""
