"""Simulated national systems and test servers, on loopback only."""
