"""Transports: how bytes move between the hub and a national system."""
