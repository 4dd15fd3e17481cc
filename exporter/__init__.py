"""Prometheus exporter for Bittensor validators: stakes, childkey takes and parent/child edges."""

__version__ = "0.1.0"
