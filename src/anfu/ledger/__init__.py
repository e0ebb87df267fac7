"""Double-entry ledger: accounts, single-phase and two-phase transfers, invariants."""
