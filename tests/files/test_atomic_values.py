"""Atomic writes pinned (issue 27): the modes of what they leave (a plain open() /
makedirs would give 0666 / 0777 minus the umask, not mkstemp's 0600 / mkdtemp's
0700), the temporary names, nothing left behind on failure, overwrite rules."""
import os
import stat

import pytest

from prtr_tf.files import atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_get_plain_modes(tmp_path, umask_027):
    # umask 027: files 0640, folders 0750. Rules out a dropped chmod (0600 / 0700),
    # the folder mode on files, ignoring the umask (0666 / 0777).
    f = atomic.write_text(str(tmp_path / "a.json"), "{}")
    assert _mode(f) == 0o640
    b = atomic.write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    assert _mode(b) == 0o640
    with atomic.atomic_output(str(tmp_path / "model"), folder=True) as tmp:
        assert os.path.isdir(tmp) and os.listdir(tmp) == []
        with open(os.path.join(tmp, "x"), "w") as fh:
            fh.write("1")
    assert _mode(tmp_path / "model") == 0o750
    assert (tmp_path / "model" / "x").read_text() == "1"
    assert atomic._default_mode(False) == 0o640 and atomic._default_mode(True) == 0o750
    assert os.umask(0o027) == 0o027  # _default_mode left the umask as it was


def test_overwrite_gives_the_default_mode_and_the_new_content(tmp_path, umask_027):
    path = tmp_path / "r.txt"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic.write_text(str(path), "new\r\nline")
    assert _mode(path) == 0o640
    with open(path, "rb") as fh:
        assert fh.read() == b"new\r\nline"  # newline="": written as given
    assert sorted(os.listdir(tmp_path)) == ["r.txt"]


def test_temporary_name_is_hidden_next_to_the_target_with_its_suffixes(tmp_path):
    with atomic.atomic_output(str(tmp_path / "last.weights.h5")) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        name = os.path.basename(tmp)
        assert name.startswith(".last.weights.h5.partial-")
        assert name.endswith(".weights.h5")
        assert os.path.exists(tmp)
        with open(tmp, "w") as fh:
            fh.write("w")
    assert (tmp_path / "last.weights.h5").read_text() == "w"


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(str(path)) as tmp:
            with open(tmp, "w") as fh:
                fh.write("partial")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "keep").write_text("k")
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(str(folder), folder=True) as tmp:
            raise RuntimeError("x")
    assert os.listdir(folder) == ["keep"]
    assert sorted(os.listdir(tmp_path)) == ["export", "results.json"]


def test_folder_replaces_a_folder_and_leaves_no_old_copy(tmp_path):
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "old").write_text("o")
    with atomic.atomic_output(str(folder), folder=True) as tmp:
        open(os.path.join(tmp, "new"), "w").close()
    assert os.listdir(folder) == ["new"]
    assert os.listdir(tmp_path) == ["saved_model"]


def test_overwrite_false_and_a_file_in_place_of_a_folder(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="exists$"):
        with atomic.atomic_output(str(path), overwrite=False):
            pytest.fail("the block must not run")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        with atomic.atomic_output(str(path), folder=True):
            pytest.fail("the block must not run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic.atomic_output(str(empty), folder=True, overwrite=False) as tmp:
        open(os.path.join(tmp, "f"), "w").close()
    assert os.listdir(empty) == ["f"]
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        with atomic.atomic_output(str(empty), folder=True, overwrite=False):
            pass
    # a new parent folder is created
    atomic.write_text(str(tmp_path / "new" / "deep" / "f.txt"), "t")
    assert (tmp_path / "new" / "deep" / "f.txt").read_text() == "t"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "empty", "new"]


def test_remove_partials_only_removes_partials(tmp_path):
    for name in (".m.csv.partial-abc", ".x.old-1", "keep.partial-1", ".hidden", "a"):
        (tmp_path / name).write_text("")
    (tmp_path / ".d.partial-2").mkdir()
    (tmp_path / ".d.partial-2" / "f").write_text("")
    assert atomic.remove_partials(str(tmp_path)) == [".d.partial-2", ".m.csv.partial-abc",
                                                    ".x.old-1"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "a", "keep.partial-1"]
    assert atomic.remove_partials(str(tmp_path / "none")) == []
    os.symlink(str(tmp_path / "a"), str(tmp_path / ".l.partial-3"))
    assert atomic.remove_partials(str(tmp_path)) == [".l.partial-3"]
    assert (tmp_path / "a").exists()


def test_save_weights_writes_through_a_temporary_with_the_keras_suffix(tmp_path):
    class Model:
        def save_weights(self, path):
            assert path.endswith(".weights.h5") and ".partial-" in path
            with open(path, "w") as fh:
                fh.write("weights")
    out = atomic.save_weights(Model(), str(tmp_path / "best.weights.h5"))
    assert out == str(tmp_path / "best.weights.h5")
    assert (tmp_path / "best.weights.h5").read_text() == "weights"


def test_modes_with_a_group_writable_umask(tmp_path):
    # umask 002: files 0664 (a 0667 base would give 0665), folders 0775.
    old = os.umask(0o002)
    try:
        f = atomic.write_text(str(tmp_path / "a.txt"), "x")
        with atomic.atomic_output(str(tmp_path / "d"), folder=True):
            pass
    finally:
        os.umask(old)
    assert _mode(f) == 0o664 and _mode(tmp_path / "d") == 0o775


def test_a_cleanup_error_does_not_hide_the_error_of_the_block(tmp_path, monkeypatch):
    # The temporary folder cannot be removed (rmdir fails): the block's own error is the
    # one raised, not the clean-up's.
    def no_rmdir(*args, **kwargs):
        raise PermissionError("cannot remove")
    with pytest.raises(RuntimeError, match="^the export failed$"):
        with atomic.atomic_output(str(tmp_path / "d"), folder=True) as tmp:
            open(os.path.join(tmp, "f"), "w").close()
            monkeypatch.setattr(os, "rmdir", no_rmdir)
            raise RuntimeError("the export failed")
    monkeypatch.undo()
    assert not (tmp_path / "d").exists()
