"""Luigi's configuration: the file daydream points it at (config/luigi.cfg, or LUIGI_CONFIG_PATH instead)."""

import os

import luigi.configuration

from daydream_luigi.core.settings import Paths

_added_config_files: set[str] = set()


def configure_luigi(paths: Paths) -> None:
    """Use config/luigi.cfg unless LUIGI_CONFIG_PATH names another file (then that file replaces ours). The pools'
    limits are read from the same file without Luigi (`core.settings.pool_limits`)."""
    if os.environ.get("LUIGI_CONFIG_PATH"):
        return
    config_file = str(paths.config_dir / "luigi.cfg")
    if config_file not in _added_config_files:
        _added_config_files.add(config_file)
        luigi.configuration.add_config_path(config_file)
