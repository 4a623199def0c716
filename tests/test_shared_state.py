"""The state files every process shares: written in place under a lock, readable after a kill mid-write."""

import json
import os
import signal
import threading

import pytest

from daydream_luigi.core.errors import InputError
from daydream_luigi.store.shared_state import locked_json, state_file


def test_changes_are_written_back_and_reading_writes_nothing(tmp_path):
    path = state_file(tmp_path / ".ratelimit", "free")
    assert path == tmp_path / ".ratelimit" / "free.json"
    with locked_json(path) as state:
        assert state == {}
        state["sent"] = [[1.5, 10, "a"], [2.5, 20, "b"]]
    assert path.read_text() == '{"sent": [[1.5, 10, "a"], [2.5, 20, "b"]]}'
    path.write_text('{"sent": []}, 20, "b"]]}')  # killed after writing a shorter content, before cutting the tail
    with locked_json(path) as state:
        assert state == {"sent": []}
    assert path.read_text() == '{"sent": []}, 20, "b"]]}'  # unchanged content: not rewritten
    with locked_json(path) as state:
        state["day"] = 3
    assert path.read_text() == '{"day": 3, "sent": []}'


def test_an_exception_in_the_block_writes_nothing(tmp_path):
    path = tmp_path / "ledger.json"
    with pytest.raises(RuntimeError):
        with locked_json(path) as state:
            state["spent"] = 1.0
            raise RuntimeError("refused")
    assert path.read_text() == ""


def test_threads_of_one_process_take_turns(tmp_path):
    path = tmp_path / "count.json"

    def add():
        for _ in range(200):
            with locked_json(path) as state:
                state["n"] = state.get("n", 0) + 1

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with locked_json(path) as state:
        assert state == {"n": 800}


def test_a_damaged_file_and_a_bad_name_are_reported(tmp_path):
    path = tmp_path / "free.json"
    path.write_text("not json")
    with pytest.raises(InputError) as caught:
        with locked_json(path):
            pass
    assert caught.value.problems == [
        f"{path}: not valid JSON (Expecting value: line 1 column 1 (char 0)); delete the file to reset it"
    ]
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object; delete the file to reset it"):
        with locked_json(path):
            pass
    with pytest.raises(ValueError, match="cannot name a state file"):
        state_file(tmp_path, "../escape")


def test_a_process_forked_while_a_lock_is_held_takes_it_once_the_holder_lets_go(tmp_path):
    """Luigi forks task processes while the run's display thread may hold a pool's lock: the child inherits the
    thread lock held and shares the locked open file, and before the fix it waited for them forever."""
    path = state_file(tmp_path, "pool")
    held, release = threading.Event(), threading.Event()

    def holder():
        with locked_json(path) as state:
            state["parent"] = 1
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the task process: give up (SIGALRM) rather than hang the suite if the lock never comes
        signal.alarm(10)
        with locked_json(path) as state:
            state["child"] = 1
        os._exit(0)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(path.read_text()) == {"child": 1, "parent": 1}
