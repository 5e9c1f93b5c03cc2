"""The frozen app's entry point: the same `metagui` command as a pip install (no arguments:
the window; a subcommand: the CLI)."""

import multiprocessing

from metagui.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(main())
