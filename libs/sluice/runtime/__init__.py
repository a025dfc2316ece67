"""Composition root: which services run in this process and how they are wired."""
