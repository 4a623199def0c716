"""The `daydream` command line (Click): the group and the registry of its commands in `main`, one module per
command group (run, store, curate, report, research, debug), what they share in `common`. A command module never
imports the group: `main` imports it and registers its commands."""

from daydream_luigi.cli.main import main

__all__ = ["main"]
