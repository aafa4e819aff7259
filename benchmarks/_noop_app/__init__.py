"""A throw-away tenant app for benchmarks/many_counties.py: one migration adding a column to a
county table and one no-op, so ``migrate_schemas`` across every county measures the executor
rather than heavy DDL. It is installed only by benchmarks/_noop_settings.py, never by the
product's settings."""
