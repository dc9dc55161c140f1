"""Platform: app factory, settings, database, auth and roles, geography, CLI."""
