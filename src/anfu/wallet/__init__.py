"""Customer wallets: top-ups and withdrawals through a bank, person-to-person transfers."""
