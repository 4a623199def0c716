"""The Luigi central scheduler (luigid): its config under the data folder, and the command that starts it."""

import configparser
import os
import sys
from pathlib import Path

import luigi.configuration

from daydream_luigi.core.settings import Paths, luigi_config_file


def central_url() -> str:
    """Where luigid listens, as Luigi's [core] scheduler_host and scheduler_port say."""
    config = luigi.configuration.get_config()
    return (
        f"http://{config.get('core', 'scheduler_host', '127.0.0.1')}:{config.getint('core', 'scheduler_port', 8082)}/"
    )


def luigid_config(paths: Paths, history: bool = True) -> Path:
    """config/luigi.cfg (pool limits included) plus the state file and (unless `history` is False) the SQLite task
    history in data/luigid/. The history costs luigid, whose one thread serves every worker, an SQLite commit per
    task event: at a pool of 100 most of its CPU (BENCHMARKS.md, "Scale-out")."""
    folder = paths.data_root / "luigid"
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    config = configparser.ConfigParser()
    config.read(luigi_config_file(paths))
    for section in ("scheduler", "task_history"):
        if not config.has_section(section):
            config.add_section(section)
    config.set("scheduler", "state_path", str(folder / "state.pickle"))
    config.set("scheduler", "record_task_history", "true" if history else "false")
    config.set("task_history", "db_connection", f"sqlite:///{folder / 'history.db'}")
    path = folder / "luigid.cfg"
    with path.open("w") as handle:
        config.write(handle)
    return path


def exec_luigid(paths: Paths, port: int, address: str = "127.0.0.1", history: bool = True) -> None:
    """Replace this process by luigid, configured by `luigid_config`."""
    os.environ["LUIGI_CONFIG_PATH"] = str(luigid_config(paths, history))
    command = luigid_command(paths, port, address)
    os.execv(command[0], command)


def luigid_command(paths: Paths, port: int, address: str = "127.0.0.1") -> list[str]:
    luigid = Path(sys.executable).with_name("luigid")
    return [
        str(luigid),
        "--address",
        address,
        "--port",
        str(port),
        "--logdir",
        str(paths.data_root / "luigid" / "logs"),
    ]
