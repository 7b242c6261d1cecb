"""Offline corpus preparation and the online input pipeline."""
