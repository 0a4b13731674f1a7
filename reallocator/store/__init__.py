"""The audit store: snapshots, plans, their life cycle and seller answers, on SQLite (the
embedded default) or PostgreSQL. An adapter beside `server/`: nothing in `core/` imports it."""
