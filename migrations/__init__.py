"""Alembic migrations, shipped inside the package so `aifriend migrate` works from a wheel."""
