"""Auction services: every write of listings, registrations, bids and results happens here."""
