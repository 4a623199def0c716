"""A fork server for the tests' `daydream` subprocesses: it imports the CLI and its libraries once, then forks one child
per command, which runs `python -m daydream_luigi ARGS` as a fresh interpreter would (its own process, environment,
working directory, stdin from /dev/null, stdout and stderr to files, the interpreter's normal exit).

Why: each `daydream` subprocess spent about a second of CPU importing pandas, luigi and the CLI before doing anything,
and the suite starts several hundred of them. Tests that signal, kill or time a process start it with
`subprocess.Popen` as before.

Protocol (one Unix socket, one connection per command): the client sends one JSON line {args, env, cwd, stdout,
stderr}; the server answers with a line {pid}, then, when the child has exited, a line {returncode} (negative: killed
by that signal, as `subprocess` reports it). The server exits when its stdin closes (the pytest worker is gone).
"""

import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading

PRELOAD = (
    "numpy",
    "pandas",
    "requests",
    "jinja2",
    "yaml",
    "luigi",
    "daydream_luigi.cli.main",
    "daydream_luigi.cli.run",
    "daydream_luigi.cli.store",
    "daydream_luigi.cli.curate",
    "daydream_luigi.cli.report",
    "daydream_luigi.cli.research",
    "daydream_luigi.cli.decide",
    "daydream_luigi.cli.search",
    "daydream_luigi.cli.debug",
)
# Read by a library when it is imported: a child must see its own value, so the server starts without them.
IMPORT_TIME_VARIABLES = ("LUIGI_CONFIG_PATH", "LUIGI_CONFIG_PARSER", "DAYDREAM_FSYNC")


def serve(socket_path: str) -> dict:
    """Answer requests until stdin closes; returns only in a forked child, with that child's request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wakeup_read, selectors.EVENT_READ, "child")
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    waiting: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "stdin" and not sys.stdin.readline():
                for pid in waiting:
                    os.kill(pid, signal.SIGKILL)
                sys.exit(0)
            if key.data == "child":
                os.read(wakeup_read, 4096)
                while waiting:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    connection = waiting.pop(pid)
                    connection.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                    connection.close()
            if key.data == "accept":
                connection, _ = listener.accept()
                request = json.loads(connection.makefile().readline())
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    for closing in (listener, connection, *waiting.values()):
                        closing.close()
                    os.close(wakeup_read)
                    os.close(wakeup_write)
                    return request
                connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                waiting[pid] = connection


def become(request: dict) -> None:
    """Turn this forked child into `python -m daydream_luigi ARGS` with the request's environment and files."""
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "LUIGI_CONFIG_PATH" in os.environ:  # what importing luigi does with it in a fresh interpreter
        import luigi.configuration

        luigi.configuration.add_config_path(os.environ["LUIGI_CONFIG_PATH"])
    sys.argv = ["daydream_luigi", *request["args"]]
    runpy.run_module("daydream_luigi", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    for name in IMPORT_TIME_VARIABLES:
        os.environ.pop(name, None)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # no BLAS thread pool in a process that forks
    for module in PRELOAD:
        __import__(module)
    if threading.active_count() != 1:
        sys.exit(f"cli_forkserver: preloading started threads ({threading.enumerate()}); a fork would inherit them")
    become(serve(sys.argv[1]))
