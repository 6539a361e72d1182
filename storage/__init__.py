"""Persistent state: tables, the engine, migrations and the repositories that own all SQL."""
