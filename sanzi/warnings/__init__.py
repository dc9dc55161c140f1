"""Warnings: the rule catalogue, the engine (incremental and full scan), alerts, the integrity index and
the supervisors' review. Nothing imports this package except the app factory and the event wiring."""
