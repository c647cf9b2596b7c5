"""The output policy (`prtr_tf.files.outputs.check_output`): each rule with the case
that breaks it, and the message naming the flag and what to do."""

import pytest

from prtr_tf.files.outputs import check_output


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "results.json"
    out.write_text("users' data")
    with pytest.raises(FileExistsError, match=r"--output .*results.json' exists; pass "
                       r"--overwrite to replace it"):
        check_output(str(out))
    assert check_output(str(out), overwrite=True) == str(out)
    assert out.read_text() == "users' data"  # checking never writes


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_input_is_never_the_output(tmp_path, overwrite):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "best.weights.h5").write_bytes(b"w")
    # The same path (also through a different spelling), with or without --overwrite.
    with pytest.raises(ValueError, match=r"is the same path as --checkpoint"):
        check_output(str(tmp_path / "x" / ".." / "run"), inputs=[("--checkpoint", str(workdir))],
                     overwrite=overwrite, folder=True)
    # A folder that holds an input: replacing it would delete the input.
    with pytest.raises(ValueError, match=r"is a folder that holds --checkpoint"):
        check_output(str(tmp_path), inputs=[("--checkpoint", str(workdir / "best.weights.h5"))],
                     overwrite=overwrite, folder=True)
    # Beside or inside an input folder is fine (a new file), and None inputs are skipped.
    check_output(str(workdir / "eval.json"), inputs=[("--checkpoint", str(workdir)),
                                                      ("--det_json", None)])


def test_file_and_folder_mix_ups_and_unwritable_folders(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_output(str(tmp_path / "dir"), overwrite=True)
    with pytest.raises(ValueError, match="is a file; give a folder"):
        check_output(str(tmp_path / "file"), overwrite=True, folder=True)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output(str(tmp_path / "file" / "out.json"))
    # An empty folder output is not "existing data"; a non-empty one is.
    check_output(str(tmp_path / "dir"), folder=True)
    (tmp_path / "dir" / "a").write_text("a")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        check_output(str(tmp_path / "dir"), folder=True)
    # Missing parents are fine (created when written).
    check_output(str(tmp_path / "new" / "deeper" / "out.json"))



def test_an_unwritable_folder_is_refused(tmp_path, monkeypatch):
    # Root (CI) writes anywhere, so the permission is faked: the rule, not the OS, is
    # what is tested; the first existing parent of a new path is the one asked.
    asked = []

    def access(path, mode):
        asked.append(path)
        return False

    monkeypatch.setattr("prtr_tf.files.outputs.os.access", access)
    with pytest.raises(ValueError, match=r"cannot write into .* \(permission denied\)"):
        check_output(str(tmp_path / "new" / "out.json"))
    assert asked == [str(tmp_path)]
