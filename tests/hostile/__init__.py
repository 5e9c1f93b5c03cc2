"""Hostile inputs: damaged, forged, oversized or odd files and options, each through the CLI."""
