"""Interchange: a versioned file format for a city's existing records, with its import and export."""
