"""Dagster wiring: definitions, resources, partitions, configs, assets and checks. No algorithms."""
