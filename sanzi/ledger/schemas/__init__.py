"""Ledger API schemas."""
