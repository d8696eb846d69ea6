"""Data that watches itself: vendor schema drift, freshness rules and alert destinations.

Plain modules, no Dagster: ``spy_assets.defs.quality`` turns them into checks and sensors.
"""
