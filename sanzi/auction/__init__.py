"""Auction: listings, announcements, bidder registration and deposits, live bidding, closing and results."""
