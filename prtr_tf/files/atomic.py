"""Atomic outputs: a file or a folder is written under a temporary
name next to its destination and moved there (`os.replace`) only once it is complete,
so that a failed or interrupted export leaves nothing partial behind.
"""
import contextlib
import os
import pathlib
import shutil
import tempfile


def _default_mode(folder):
    """The permissions a plain open() / os.makedirs would give (mkstemp / mkdtemp use
    0600 / 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_output(path, folder=False, overwrite=True):
    """Yields a temporary path next to ``path`` to write (a file, or with ``folder`` a
    folder, created empty); when the block ends without an exception it replaces
    ``path``, otherwise it is removed.

    ``overwrite=False``: an existing ``path`` (a non-empty folder with ``folder``) is a
    FileExistsError, raised before anything is written.
    """
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path!r} exists and is not a folder")
    if not overwrite and os.path.exists(path) and not (folder and not os.listdir(path)):
        raise FileExistsError(f"{path!r} exists" + (" and is not empty" if folder else ""))
    os.makedirs(parent, exist_ok=True)
    if folder:
        tmp = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.partial-",
                                   suffix="".join(pathlib.PurePath(name).suffixes),
                                   dir=parent)
        os.close(fd)
    os.chmod(tmp, _default_mode(folder))
    try:
        yield tmp
        if folder and os.path.isdir(path):
            # os.replace moves a folder onto an empty one only: the old one goes aside.
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.replace(path, os.path.join(old, name))
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(os.path.join(old, name), path)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def remove_partials(folder):
    """Removes what interrupted `atomic_output` calls left in ``folder`` (their temporary
    ``.NAME.partial-*`` / ``.NAME.old-*`` entries; a kill -9 runs no cleanup); returns
    their names. Only for a folder no other process writes into (a locked workdir)."""
    left = sorted(n for n in os.listdir(folder) if n.startswith(".")
                  and (".partial-" in n or ".old-" in n)) if os.path.isdir(folder) else []
    for name in left:
        _remove(os.path.join(folder, name))
    return left


def write_bytes(path, data):
    """Writes ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_text(path, text):
    """Writes ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(text)
    return path


def save_weights(model, path):
    """``model.save_weights(path)`` atomically (the temp name keeps the .weights.h5
    suffix Keras asks for); returns ``path``."""
    from prtr_tf.files.keras_saving import cache_attr_skipsets
    cache_attr_skipsets()
    with atomic_output(path) as tmp:
        model.save_weights(tmp)
    return path
