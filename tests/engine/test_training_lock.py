"""The run folder's training lock: no semiseg process replaces, resumes or trains a folder another one trains."""

import json
import os
import platform
import subprocess
import sys

import pytest

from semiseg.engine.run_dir import (
    MARKER, TRAINING_LOCK, check_not_in_use, lock_holder, prepare_run_dir, training_lock,
)
from semiseg.errors import ConfigError


def _lock_of(run_dir, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRAINING_LOCK).write_text(json.dumps({"pid": pid, "host": platform.node(), "started": "then"}))


def _ended_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_lock_is_held_while_the_block_runs_and_is_reentrant(tmp_path):
    run = tmp_path / "run"
    with training_lock(run):
        info = lock_holder(run)
        assert info["pid"] == os.getpid() and info["host"] == platform.node()
        check_not_in_use(run, "do it")  # this process's own lock
        with training_lock(run):  # re-entrant: the inner block keeps the outer lock
            pass
        assert (run / TRAINING_LOCK).is_file()
    assert lock_holder(run) is None and not (run / TRAINING_LOCK).exists()


def test_another_live_process_lock_refuses_and_touches_nothing(tmp_path):
    run = tmp_path / "run"
    _lock_of(run, os.getppid())  # a live process that is not this one
    (run / MARKER).write_text("{}")
    (run / "train.log").write_text("someone else's training\n")
    with pytest.raises(ConfigError, match=rf"being trained by process {os.getppid()} .*refusing to train it"):
        with training_lock(run):
            pass
    with pytest.raises(ConfigError, match="refusing to replace it"):
        prepare_run_dir(run, overwrite=True)
    assert (run / "train.log").read_text() == "someone else's training\n"
    assert json.loads((run / TRAINING_LOCK).read_text())["pid"] == os.getppid()


def test_a_lock_left_by_an_ended_process_is_stale(tmp_path):
    run = tmp_path / "run"
    _lock_of(run, _ended_pid())
    assert lock_holder(run) is None
    check_not_in_use(run, "do it")
    with training_lock(run):
        assert lock_holder(run)["pid"] == os.getpid()
    (run / TRAINING_LOCK).write_text("not json")  # unreadable: no holder
    assert lock_holder(run) is None


def test_prepare_run_dir_keeps_this_process_lock_and_counts_the_folder_empty(tmp_path):
    run = tmp_path / "run"
    with training_lock(run):  # a benchmark worker holds the lock before the trainer prepares the folder
        prepare_run_dir(run, overwrite=False)
        assert (run / MARKER).is_file() and (run / TRAINING_LOCK).is_file()


def test_resume_refuses_a_folder_another_process_trains(tmp_path):
    from semiseg.engine.trainer import Trainer

    run = tmp_path / "run"
    _lock_of(run, os.getppid())
    (run / "config.yaml").write_text("name: x\n")
    (run / ".checkpoint_latest.pt.tmp1").write_text("a temp file its writer still needs")
    with pytest.raises(ConfigError, match="refusing to resume it"):
        Trainer.resume(run)
    assert (run / ".checkpoint_latest.pt.tmp1").is_file()
