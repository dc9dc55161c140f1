"""Ledger: asset registry, double-entry books with hash chains, contracts and payment schedules."""
