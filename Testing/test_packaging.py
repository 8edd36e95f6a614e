"""Issue #21 item 6: what `pip install .` packages and how the installed library finds its
bundled resources; the README's Python API snippet runs as printed. (The non-editable install
itself, in a fresh virtual environment: `test_install.py`.)"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from PatchSamplerLib import checkpoints

tomllib = pytest.importorskip("tomllib")      # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "Resources"
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGE_DATA = SETUPTOOLS["package-data"]["PatchSamplerLib._resources"]


def packaged(path: Path) -> bool:
    """Whether a file under Resources/ matches the package-data globs of PatchSamplerLib._resources."""
    relative = path.relative_to(RESOURCES).as_posix()
    return any(fnmatch.fnmatch(relative, pattern) and relative.count("/") == pattern.count("/")
               for pattern in PACKAGE_DATA)


def test_every_package_of_the_library_is_listed():
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "PatchSamplerLib").rglob("__init__.py"))
    listed = sorted(p for p in SETUPTOOLS["packages"] if p != "PatchSamplerLib._resources")
    assert listed == found
    assert SETUPTOOLS["package-dir"] == {"PatchSamplerLib._resources": "Resources"}


@pytest.mark.parametrize("kind", ["prior_*.pt", "prior_*_sparse*.pt", "sampler_*.pt", "*/metadata.json"])
def test_every_bundled_model_is_packaged(kind):
    files = sorted((RESOURCES / "Models").glob(kind))
    assert files and [f.name for f in files if not packaged(f)] == []


def test_the_sample_data_and_its_licence_are_packaged():
    files = sorted((RESOURCES / "SampleData").glob("*.nii.gz"))
    assert len(files) >= 4 and all(packaged(f) for f in files)
    assert packaged(RESOURCES / "SampleData" / "LICENSE") and packaged(RESOURCES / "SampleData" / "README.md")


def test_the_sobol_table_is_packaged():
    from PatchSamplerLib.method.pointcloud import SOBOL_TABLES
    files = [RESOURCES / "Sobol" / name for name in SOBOL_TABLES.values()]
    assert all(f.is_file() and packaged(f) for f in files) and packaged(RESOURCES / "Sobol" / "README.md")
    assert checkpoints.SOBOL_DIR == RESOURCES / "Sobol"
    cmake = (ROOT / "CMakeLists.txt").read_text()                   # the Slicer extension installs it too
    assert '"Sobol/*.npy"' in cmake and '"${CMAKE_CURRENT_SOURCE_DIR}/Resources/${resource_glob}"' in cmake


def test_every_resource_the_readme_uses_is_packaged():
    used = set(re.findall(r"Resources/(?:SampleData|Models)/[\w.-]+\.(?:nii\.gz|pt)", (ROOT / "README.md").read_text()))
    assert "Resources/SampleData/kidney_left_1.5mm.nii.gz" in used
    assert [u for u in sorted(used) if not (ROOT / u).is_file() or not packaged(ROOT / u)] == []


def test_logs_and_curves_stay_out_of_the_wheel():
    assert not any(packaged(p) for p in (RESOURCES / "Models").rglob("*") if p.suffix in (".png", ".log", ".jsonl", ".py"))


def test_no_library_module_reads_resources_by_a_path_of_its_own():
    """Only `checkpoints` knows where Resources/ is (everything else asks it)."""
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "PatchSamplerLib").rglob("*.py")
             if re.search(r"[\"']Resources[\"']|parents\[", p.read_text())]
    assert users == ["PatchSamplerLib/checkpoints.py"]


def test_the_source_tree_uses_its_own_resources():
    assert checkpoints.resources_dir() == RESOURCES
    assert checkpoints.SAMPLE_DATA_DIR == RESOURCES / "SampleData"


def test_an_installed_package_uses_the_resources_inside_it(tmp_path, monkeypatch):
    import importlib.resources
    site = tmp_path / "site-packages"
    (site / "PatchSamplerLib" / "_resources" / "Models").mkdir(parents=True)
    monkeypatch.setattr(checkpoints, "ROOT", site)                  # no Resources/ next to the package
    monkeypatch.setattr(importlib.resources, "files", lambda package: site / package)
    assert checkpoints.resources_dir() == site / "PatchSamplerLib" / "_resources"


def test_sample_data_by_name():
    path = checkpoints.sample_data_path("kidney_left_1.5mm.nii.gz")
    assert path == RESOURCES / "SampleData" / "kidney_left_1.5mm.nii.gz" and path.is_file()
    assert set(checkpoints.bundled_sample_data()) >= {"kidney_left.nii.gz", "kidney_right_1.5mm.nii.gz"}
    with pytest.raises(FileNotFoundError, match="kidney_left_1.5mm.nii.gz"):
        checkpoints.sample_data_path("kidney.nii.gz")


def python_api_snippets(t: int = 3) -> str:
    """The README's Python API code blocks, in order, with T reduced to `t` (the fit's steps)."""
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))
    return re.sub(r"\bt=100\b", f"t={t}", code)


def test_the_readme_python_api_runs_as_printed(tmp_path, monkeypatch, capsys):
    code = python_api_snippets()
    assert code.count("reconstruct(") == 2 and "t=3" in code
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert set(namespace["result"].metrics) == {"dice", "asd_mm", "hd95_mm"}
    assert "'dice'" in capsys.readouterr().out
    assert (tmp_path / "reconstruction.nii.gz").is_file()


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_files_the_snippet_writes_are_git_ignored():
    written = re.findall(r"write_labelmap\(\"([^\"]+)\"", python_api_snippets())
    assert written == ["reconstruction.nii.gz"]
    done = subprocess.run(["git", "check-ignore", *written], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == written
