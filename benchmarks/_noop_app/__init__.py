"""A throw-away tenant app for benchmarks/many_counties.py: its only migrations are no-ops, so
``migrate_schemas`` across every county measures the executor, not the DDL. It is installed
only by benchmarks/_noop_settings.py, never by the product's settings."""
