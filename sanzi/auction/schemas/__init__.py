"""Auction API schemas."""
