"""Phases composed from the pure stages."""
