"""Metrics and logging shared by every service."""
