"""Packaging: what a user who only ran ``pip install`` gets.

The configs ship as the package ``prtr_tf.configs`` (setup.py maps the top-level
``configs/`` folder to it), so `load_config` finds them by name from any folder,
and the console scripts (``prtr-train`` ...) run from an installed wheel.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

from prtr_tf.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_load_config_by_name_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("synthetic_tiny", "synthetic_tiny.py", "configs/synthetic_tiny.py"):
        config = load_config(name)
        assert config.model.hidden_dim == 64 and config.data.root == "data/synthetic"
    # An existing path is loaded as it is (here: a copy with another name).
    own = tmp_path / "mine.py"
    shutil.copy(REPO / "configs" / "synthetic_tiny.py", own)
    assert load_config(str(own)).model.hidden_dim == 64
    assert load_config(own).model.hidden_dim == 64

    with pytest.raises(FileNotFoundError, match="known configs: .*synthetic_tiny") as e:
        load_config("no_such_config")
    assert "coco_res50_384x288" in str(e.value) and "__init__" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="known configs"):
        load_config("elsewhere/synthetic_tiny.py")  # a missing path is not a name


def _copy_source(dest):
    """The checkout's source without its venv, build products, data and runs: the
    wheel is built from this copy, so stale ``build/`` files of the checkout cannot
    get in and nothing is written into the checkout while others work in it."""
    top = {".git", ".venv", "build", "dist", "data", "runs", "mutants"}  # prtr_tf/data is source

    def ignore(folder, names):
        at_top = pathlib.Path(folder) == REPO
        return [n for n in names if n in ("__pycache__", ".pytest_cache")
                or n.endswith(".egg-info") or (at_top and (n in top or n.startswith("workdir")))]

    shutil.copytree(REPO, dest, ignore=ignore)


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    """Builds the wheel, installs it into a fresh venv outside the checkout and runs
    ``prtr-train`` from a folder outside the checkout.

    Nothing is downloaded: the wheel is built with ``--no-build-isolation`` (the
    setuptools and wheel of the running environment) and installed with
    ``--no-deps``. The heavy dependencies (TensorFlow, ...) come from the running
    environment through one ``.pth`` file in the fresh venv's site-packages that
    names the running environment's site-packages: a .pth line that is a folder is
    appended to sys.path *after* the fresh venv's own site-packages, so the
    installed prtr_tf wins, and the .pth files inside that folder (e.g. an editable
    install's finder pointing at the checkout) are not run, so the checkout cannot
    be imported. PYTHONPATH and friends are dropped, and the runs happen in a folder
    outside the checkout. The test asserts that the prtr_tf imported is the
    fresh venv's.
    """
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    src = tmp_path / "src"
    _copy_source(src)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH",
                        "VIRTUAL_ENV", "PYTHONNOUSERSITE")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(*cmd, timeout=600, ok=(0,)):
        result = subprocess.run([str(c) for c in cmd], cwd=work, env=env, timeout=timeout,
                                capture_output=True, text=True)
        assert result.returncode in ok, (
            f"{cmd} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}")
        return result.stdout + result.stderr

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--quiet", "-w", wheels, src)
    (wheel,) = wheels.glob("prtr_tf-*.whl")
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    # The library only: no developer tooling (tools/: benchmarks, parity, the PyTorch
    # reference), no tests.
    assert not [n for n in names if n.split("/")[0] in ("tools", "tests")
                or n.startswith("prtr_tf/tools/")], names
    assert "prtr_tf/models/registry.py" in names and "prtr_tf/configs/tiny.py" in names

    run(sys.executable, "-m", "venv", venv)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    site = pathlib.Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                            "['purelib'])").strip().splitlines()[-1])
    (site / "_prtr_test_main_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel)

    # The installed package, not the checkout; its configs resolve by name.
    out = run(python, "-c", "import prtr_tf, prtr_tf.configs; "
              "from prtr_tf.config import load_config; "
              "print(prtr_tf.__file__); print(prtr_tf.configs.__file__); "
              "print(load_config('synthetic_tiny').model.hidden_dim)")
    pkg_file, configs_file, hidden = out.strip().splitlines()[-3:]
    assert pathlib.Path(pkg_file).resolve().is_relative_to(venv.resolve()), pkg_file
    assert pathlib.Path(configs_file).resolve().is_relative_to(site.resolve()), configs_file
    assert (pathlib.Path(configs_file).parent / "synthetic_tiny.py").is_file()
    assert hidden == "64"
    for script in ("prtr-train", "prtr-eval", "prtr-predict", "prtr-export", "prtr-convert"):
        assert (bin_dir / script).is_file(), script

    out = run(bin_dir / "prtr-train", "--help")
    for flag in ("--config", "--workdir", "--max_steps"):
        assert flag in out, out

    rundir, data = tmp_path / "run", tmp_path / "data"
    run(bin_dir / "prtr-train", "--config=synthetic_tiny", f"--workdir={rundir}",
        "--config.train.epochs=1", "--config.train.steps_per_epoch=2",
        "--config.train.eval_every_epochs=0", f"--config.data.root={data}")
    assert list((rundir / "checkpoints").glob("ckpt-*.index")), sorted(rundir.rglob("*"))
