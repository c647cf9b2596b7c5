"""The output policy every tool follows (checked before any work starts):

* an output that exists is never replaced unless the user says so (``--overwrite``);
* nothing a tool reads (its checkpoint, workdir, config, source, data) can be its
  output, with or without ``--overwrite``: not the same path, and not a folder that
  holds it (replacing that folder would delete it);
* a file output must not be an existing folder (and a folder output not a file), and
  its folder must be writable.

Outputs are then written atomically (`prtr_tf.files.atomic`).
"""
import os


def _real(path):
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _inside(path, folder):
    """``path`` is ``folder`` or lies inside it (real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(path, flag="--output", overwrite=False, inputs=(), folder=False):
    """Raises a one-line error naming ``flag`` when ``path`` may not be written:
    ValueError (an input, a file/folder mix-up, an unwritable folder) or
    FileExistsError (exists, no ``overwrite``). ``inputs``: (flag, path) pairs the tool
    reads (None paths are skipped). Returns the absolute path."""
    if not path:
        raise ValueError(f"{flag} is empty: give a path")
    real = _real(path)
    for in_flag, in_path in inputs:
        if not in_path:
            continue
        source = _real(in_path)
        if real == source:
            what = "the same path as"
        elif _inside(source, real):
            what = "a folder that holds"
        else:
            continue
        raise ValueError(f"{flag} {path!r} is {what} {in_flag} {in_path!r}: a tool never "
                         f"writes over what it reads; choose another {flag}")
    if os.path.exists(real):
        if folder and not os.path.isdir(real):
            raise ValueError(f"{flag} {path!r} is a file; give a folder")
        if not folder and os.path.isdir(real):
            raise ValueError(f"{flag} {path!r} is a folder; give a file name")
        if not overwrite and not (folder and not os.listdir(real)):
            raise FileExistsError(f"{flag} {path!r} exists" + (" and is not empty" if folder
                                                                else "")
                                  + "; pass --overwrite to replace it, or choose another "
                                  + flag)
    parent = os.path.dirname(real)
    while not os.path.exists(parent):  # created when written: check the first that exists
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path!r}: {parent!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r}: cannot write into {parent!r} (permission "
                         "denied)")
    return os.path.abspath(path)
