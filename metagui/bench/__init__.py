"""Benchmarks behind ``metagui bench``: long measurements over the core's public API, one
module per subcommand (train, learn, text, bandits, ambiguous, chat).

The core never imports this package (an import-linter contract in pyproject.toml), so the
engine ships without it mattering; the CLI imports each module only when its subcommand runs.
"""
