"""Ledger services: every write of the books, the asset registry and contracts happens here."""
