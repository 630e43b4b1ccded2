"""Marketplace Health Platform: the `mhp` command and cross-cutting plumbing."""
