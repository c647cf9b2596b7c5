"""What keeps a training workdir consistent: one run at a time (`WorkdirLock`), and a
metrics.csv with one header and one row per epoch, rewritten atomically
(`upsert_csv_row`).

A second run started into a busy workdir fails at once, naming the lock file and the
PID that holds it; a lock left by a run that was killed (its PID no longer alive on
this host) is taken over with a note.
"""
import csv
import io
import json
import os
import socket

from prtr_tf.files import atomic

LOCK_NAME = ".lock"


class WorkdirBusyError(FileExistsError):
    """Another live process holds the workdir's lock (its lock file exists)."""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_folder(workdir):
    """A NotADirectoryError when ``workdir`` (or a parent) exists as a file."""
    path = os.path.abspath(workdir)
    while path and not os.path.isdir(path):
        if os.path.exists(path):
            raise NotADirectoryError(f"the workdir {workdir} cannot be a folder: {path} is "
                                     "a file. Give --workdir a new folder or a training "
                                     "workdir")
        path = os.path.dirname(path) if os.path.dirname(path) != path else ""


class WorkdirLock:
    """An exclusive lock file ``workdir/NAME`` holding the owner's PID and host.

    ``with WorkdirLock(workdir): ...``; ``note`` (after entering) says whether a
    stale lock was taken over.
    """

    def __init__(self, workdir, name=LOCK_NAME):
        self.path = os.path.join(workdir, name)
        self.note = None
        self._held = False

    def _owner(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None  # unreadable: a half-written lock of a killed run

    def acquire(self):
        check_folder(os.path.dirname(self.path) or ".")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and owner.get("host") != me["host"]:
                    raise WorkdirBusyError(
                        f"{self.path} is held by PID {owner.get('pid')} on host "
                        f"{owner.get('host')}: another run uses this workdir (if that run "
                        "is gone, delete the lock file)") from None
                if owner and owner.get("pid") != me["pid"] and _alive(int(owner["pid"])):
                    raise WorkdirBusyError(
                        f"{self.path} is held by PID {owner['pid']}: another run is "
                        "training into this workdir; wait for it, stop it, or choose "
                        "another --workdir") from None
                self.note = (f"took over the lock {self.path} left by PID "
                             f"{owner.get('pid') if owner else '?'} (no longer running)")
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise WorkdirBusyError(f"could not take the lock {self.path}")

    def release(self):
        if self._held:
            self._held = False
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def read_csv_rows(path):
    """The rows of a metrics.csv (list of dicts; [] when absent)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def upsert_csv_row(path, row, key="epoch"):
    """Adds ``row`` to the CSV at ``path``, replacing a row with the same ``key`` (an
    epoch written again after a resume), and rewrites the file atomically with one
    header: the union of the columns in first-seen order (rows without a column leave
    it empty)."""
    rows = [r for r in read_csv_rows(path) if str(r.get(key)) != str(row[key])]
    rows.append({k: v for k, v in row.items()})
    rows.sort(key=lambda r: float(r[key]))
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, out.getvalue())
