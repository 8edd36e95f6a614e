"""Issue #21 item 6: `pip install .` (not editable) into a fresh virtual environment gives a
`patchsampler` command and a library that find the bundled priors, samplers and sample data,
run from another folder.

The fresh environment borrows this interpreter's installed packages (torch, SimpleITK,
setuptools, pip) through a .pth file instead of downloading them, and the package is built from
a copy of the sources without network (--no-deps --no-build-isolation --no-index), so the
repository gets no build/ folder. About 30-60 s on 2 CPU cores.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from test_packaging import python_api_snippets

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "PatchSamplerLib", "Resources")

pytestmark = pytest.mark.install


def fresh_environment(folder: Path) -> Path:
    """A virtual environment without pip whose site-packages also sees this interpreter's -> its python."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    borrowed = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    Path(own, "_borrowed_site_packages.pth").write_text("\n".join(borrowed) + "\n")
    return python


def run(cmd, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PATCHSAMPLER_MODELS", "PYTHONHOME")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(env, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh environment with the package installed from a copy of the sources, a
    working folder outside the repository)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    python = fresh_environment(base / "fresh")
    done = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", source],
               cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(source)                      # nothing may be read from the sources any more
    work = base / "work"
    work.mkdir()
    return python, work


def test_the_installed_library_finds_its_bundled_resources(installed):
    python, work = installed
    code = ("import json, PatchSamplerLib as p, PatchSamplerLib.checkpoints as c; print(json.dumps({"
            "'package': p.__file__, 'models': str(c.MODELS_DIR), 'priors': sorted(c.bundled_models()), "
            "'samplers': len(c.bundled_samplers()) + len(c.bundled_any_samplers()), 'sample': str(c.sample_data_path('kidney_left_1.5mm.nii.gz'))}))")
    done = run([python, "-c", code], cwd=work)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    package, fresh = Path(found["package"]).resolve().parent, Path(python).parent.parent.resolve()
    assert fresh in package.parents                      # the installed copy, not the repository
    assert Path(found["models"]) == package / "_resources" / "Models"
    assert found["priors"] == sorted(p.stem[len("prior_"):] for p in (ROOT / "Resources" / "Models").glob("prior_*.pt"))
    assert found["samplers"] == len(list((ROOT / "Resources" / "Models").glob("sampler_*.pt")))
    assert Path(found["sample"]).is_file() and package in Path(found["sample"]).resolve().parents


def test_the_patchsampler_command_runs_with_a_bundled_prior(installed):
    python, work = installed
    command = Path(python).parent / ("patchsampler.exe" if os.name == "nt" else "patchsampler")
    sample = run([python, "-c", "from PatchSamplerLib.checkpoints import sample_data_path as s; "
                  "print(s('kidney_left_1.5mm.nii.gz'))"], cwd=work).stdout.strip()
    done = run([command, "run", "--input", sample, "--prior", "kidney", "--n", "4", "--k", "5", "--t", "5",
                "--out", "out"], cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    prior = Path(json.loads((work / "out" / "patches.json").read_text())["prior"]).resolve()
    assert prior.name == "prior_kidney.pt" and Path(python).parent.parent.resolve() in prior.parents


def test_the_readme_python_api_runs_from_another_folder(installed):
    python, work = installed
    done = run([python, "-c", python_api_snippets()], cwd=work)
    assert done.returncode == 0, done.stderr
    assert "'dice'" in done.stdout and (work / "reconstruction.nii.gz").is_file()
