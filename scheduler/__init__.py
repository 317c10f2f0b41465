"""Proactive check-ins: pure timing rules and the sweeps that act on them."""
