"""The triage store: classification requests, their results and reviewer feedback (SQLite or PostgreSQL)."""
