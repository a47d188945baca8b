"""The app tests that need a store use the store tests' fixtures: a migrated SQLite file."""

from tests.store.conftest import data_dir, db_url, store

__all__ = ["data_dir", "db_url", "store"]
