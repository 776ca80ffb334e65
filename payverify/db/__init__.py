"""The database boundary: the only package that imports psycopg2 (see connection.py)."""

from payverify.db.connection import Database, Tx

__all__ = ["Database", "Tx"]
