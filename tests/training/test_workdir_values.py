"""metrics.csv rows pinned (issue 27): numeric epoch order past 9 epochs, one row per
epoch after a resume, the union of columns in first-seen order, and the lock file's
contents."""
import csv
import json
import os
import stat

import pytest

from prtr_tf.training import workdir


def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_rows_are_in_numeric_epoch_order_past_nine(tmp_path):
    # Written 12, 3, 10, 1, 2, 11, 9, ... : a string sort would give 1, 10, 11, 12, 2.
    path = str(tmp_path / "metrics.csv")
    for epoch in (12, 3, 10, 1, 2, 11, 9, 4, 5, 8, 6, 7):
        workdir.upsert_csv_row(path, {"epoch": epoch, "loss": epoch / 10})
    rows = _read(path)
    assert rows[0] == ["epoch", "loss"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 13))
    assert rows[10] == ["10", "1.0"]
    assert workdir.read_csv_rows(path)[11] == {"epoch": "12", "loss": "1.2"}


def test_an_epoch_written_again_after_a_resume_replaces_its_row(tmp_path):
    # Epoch 10 first written with 30 s; the resumed run writes it again with 45 s and a
    # new column: one row for epoch 10 (the new one), epoch 1 left as it was, and 1
    # vs 10 are different keys (a prefix / string-start match would merge them).
    path = str(tmp_path / "metrics.csv")
    workdir.upsert_csv_row(path, {"epoch": 1, "epoch_time_s": 12.5})
    workdir.upsert_csv_row(path, {"epoch": 10, "epoch_time_s": 30.0})
    workdir.upsert_csv_row(path, {"epoch": 10, "epoch_time_s": 45.0, "AP": 0.25})
    rows = _read(path)
    assert rows == [["epoch", "epoch_time_s", "AP"], ["1", "12.5", ""],
                    ["10", "45.0", "0.25"]]
    with open(path, newline="") as f:
        assert f.read().count("epoch,") == 1  # one header


def test_columns_are_the_union_in_first_seen_order(tmp_path):
    # Rules out sorted columns, only the new row's columns, or only the first row's.
    path = str(tmp_path / "metrics.csv")
    workdir.upsert_csv_row(path, {"epoch": 2, "zeta": 1, "alpha": 2})
    workdir.upsert_csv_row(path, {"epoch": 1, "loss": 3})
    assert _read(path) == [["epoch", "loss", "zeta", "alpha"], ["1", "3", "", ""],
                           ["2", "", "1", "2"]]
    # another key column
    other = str(tmp_path / "by_step.csv")
    workdir.upsert_csv_row(other, {"step": 100, "epoch": 1}, key="step")
    workdir.upsert_csv_row(other, {"step": 20, "epoch": 1}, key="step")
    assert [r["step"] for r in workdir.read_csv_rows(other)] == ["20", "100"]
    assert workdir.read_csv_rows(str(tmp_path / "absent.csv")) == []


def test_metrics_csv_gets_the_mode_of_a_plain_file(tmp_path):
    # Written atomically (a mkstemp file is 0600): the result must be 0666 & ~umask.
    old = os.umask(0o022)
    try:
        path = str(tmp_path / "metrics.csv")
        workdir.upsert_csv_row(path, {"epoch": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [n for n in os.listdir(tmp_path) if n != "metrics.csv"] == []


def test_lock_file_names_this_process_and_is_removed(tmp_path):
    import socket
    lock = workdir.WorkdirLock(str(tmp_path / "run"))
    with lock:
        with open(lock.path) as f:
            owner = json.load(f)
        assert owner == {"pid": os.getpid(), "host": socket.gethostname()}
        assert lock.note is None
    assert not os.path.exists(lock.path)


def test_a_lock_of_another_host_or_a_live_pid_is_busy_and_a_dead_one_taken_over(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    path = folder / workdir.LOCK_NAME
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(workdir.WorkdirBusyError, match="PID 1 on host elsewhere.example"):
        workdir.WorkdirLock(str(folder)).acquire()
    import socket
    # a live process of this host (a child of the test: a mutant that sends it a signal
    # instead of probing it with signal 0 hurts nothing else)
    import subprocess
    import sys
    # SIGHUP back to its default action (a run under nohup passes it on ignored, and
    # then a mutant sending signal 1 would go unnoticed), before the child says ready.
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGHUP, signal.SIG_DFL); "
                              "print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        path.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))
        with pytest.raises(workdir.WorkdirBusyError, match=f"PID {child.pid}: another run "
                                                           "is training into this workdir"):
            workdir.WorkdirLock(str(folder)).acquire()
        assert workdir._alive(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):  # probed (signal 0), not signalled
            child.wait(timeout=0.3)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert not workdir._alive(child.pid)
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    path.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    lock = workdir.WorkdirLock(str(folder)).acquire()
    assert lock.note == f"took over the lock {path} left by PID {dead} (no longer running)"
    lock.release()
    assert not path.exists()
    path.write_text("{half")  # unreadable: a half-written lock of a killed run
    lock = workdir.WorkdirLock(str(folder)).acquire()
    assert "left by PID ?" in lock.note
    lock.release()


def test_release_leaves_a_lock_taken_by_someone_else(tmp_path):
    lock = workdir.WorkdirLock(str(tmp_path)).acquire()
    with open(lock.path, "w") as f:
        json.dump({"pid": os.getpid() + 1, "host": "h"}, f)
    lock.release()
    assert os.path.exists(lock.path)


def test_check_folder_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"{blocker} is a file"):
        workdir.check_folder(str(blocker / "sub" / "run"))
    workdir.check_folder(str(tmp_path / "new" / "run"))  # not existing yet: fine


def test_lock_details(tmp_path, monkeypatch):
    import socket
    # our own PID in a left-over lock (an earlier run of this process): taken over
    # without asking whether that PID is alive
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": os.getpid(),
                                              "host": socket.gethostname()}))
    lock = workdir.WorkdirLock(str(folder)).acquire()
    assert lock.note == f"took over the lock {folder / '.lock'} left by PID {os.getpid()} " \
                       "(no longer running)"
    lock.release()
    # the lock file is 0644 whatever the umask allows
    old = os.umask(0)
    try:
        lock = workdir.WorkdirLock(str(tmp_path / "m")).acquire()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o644
    # a lock object that was never acquired, or was released, removes nothing
    other = workdir.WorkdirLock(str(tmp_path / "m"))
    other.release()
    assert os.path.exists(lock.path)
    lock.release()
    again = workdir.WorkdirLock(str(tmp_path / "m")).acquire()
    lock.release()  # a second release of the first object
    assert os.path.exists(again.path)
    again.release()


def test_lock_in_the_current_folder_and_a_file_in_the_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = workdir.WorkdirLock("").acquire()
    assert lock.path == ".lock" and os.listdir(tmp_path) == [".lock"]
    lock.release()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        workdir.WorkdirLock(str(blocker)).acquire()
    with pytest.raises(NotADirectoryError, match="is a file"):
        workdir.WorkdirLock("afile").acquire()


def test_two_attempts_then_a_clear_error(tmp_path, monkeypatch):
    # A lock that comes back after each removal (another process racing): two tries.
    folder = tmp_path / "race"
    folder.mkdir()
    (folder / ".lock").write_text("{half")
    tries = []
    real_open = os.open
    monkeypatch.setattr(workdir.os, "remove", lambda path: None)
    monkeypatch.setattr(workdir.os, "open",
                        lambda *a: tries.append(a[0]) or real_open(*a))
    with pytest.raises(workdir.WorkdirBusyError,
                       match=f"^could not take the lock {folder / '.lock'}$"):
        workdir.WorkdirLock(str(folder)).acquire()
    assert len(tries) == 2


def test_busy_messages_say_what_to_do(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(workdir.WorkdirBusyError) as e:
        workdir.WorkdirLock(str(folder)).acquire()
    assert str(e.value).endswith("another run uses this workdir (if that run is gone, "
                                 "delete the lock file)")
    import socket
    (folder / ".lock").write_text(json.dumps({"pid": 12345, "host": socket.gethostname()}))
    # kill(pid, 0) raising PermissionError: the process exists (another user's)
    def no_permission(pid, sig):
        raise PermissionError
    monkeypatch.setattr(workdir.os, "kill", no_permission)
    with pytest.raises(workdir.WorkdirBusyError) as e:
        workdir.WorkdirLock(str(folder)).acquire()
    assert str(e.value).endswith("another run is training into this workdir; wait for it, "
                                 "stop it, or choose another --workdir")


def test_values_with_line_breaks_survive_the_round_trip(tmp_path):
    path = str(tmp_path / "metrics.csv")
    workdir.upsert_csv_row(path, {"epoch": 1, "note": "a\r\nb"})
    workdir.upsert_csv_row(path, {"epoch": 2, "note": "c"})
    assert [r["note"] for r in workdir.read_csv_rows(path)] == ["a\r\nb", "c"]


def test_check_folder_message(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as e:
        workdir.check_folder(str(blocker / "run"))
    assert str(e.value) == (f"the workdir {blocker / 'run'} cannot be a folder: {blocker} is "
                            "a file. Give --workdir a new folder or a training workdir")
