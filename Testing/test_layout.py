"""The package layout: no import cycles, no upward imports (a stage imports only the stages
below it: volume -> cloud -> centres -> patches -> latent -> reconstruction -> metrics, then
pipeline, training, reporting, experiments, command line), argparse only in `cli/`, and
docstrings that cite nothing outside the repository."""
from pathlib import Path

import pytest

from import_graph import cycles, import_graph

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "PatchSamplerLib"

# Lower number = lower layer. A module may import modules of its own layer (no cycles) or below.
LAYERS = [
    ("PatchSamplerLib", 0), ("PatchSamplerLib.volume", 0), ("PatchSamplerLib.devices", 0),
    ("PatchSamplerLib.progress", 0), ("PatchSamplerLib.checkpoints", 0),
    ("PatchSamplerLib.orientation", 0), ("PatchSamplerLib.structures", 0),
    ("PatchSamplerLib.data", 1),
    ("PatchSamplerLib.method.losses", 2), ("PatchSamplerLib.method.metrics", 2), ("PatchSamplerLib.method.components", 2),
    ("PatchSamplerLib.method.pointcloud", 2),                           # volume -> cloud
    ("PatchSamplerLib.method.baselines", 3), ("PatchSamplerLib.method.samplers", 4),   # cloud -> centres
    ("PatchSamplerLib.method.patches", 5), ("PatchSamplerLib.method.frame", 5),        # centres -> patches
    ("PatchSamplerLib.method.fit_step", 3), ("PatchSamplerLib.method.graphs", 5),      # a fit step; its CUDA graph
    ("PatchSamplerLib.method.inr", 6), ("PatchSamplerLib.method.decoding", 7),         # patches -> latent -> grid
    ("PatchSamplerLib.method.sampler", 7), ("PatchSamplerLib.method.cost", 7), ("PatchSamplerLib.method.fitting", 7),
    ("PatchSamplerLib.method.sides", 7),
    ("PatchSamplerLib.method", 8),
    ("PatchSamplerLib.pipeline", 9), ("PatchSamplerLib.sparse", 9),
    ("PatchSamplerLib.training", 10), ("PatchSamplerLib.reporting", 11),
    ("PatchSamplerLib.experiments", 12), ("PatchSamplerLib.cli", 13), ("PatchSamplerLib.__main__", 13),
]


def layer(module: str) -> int:
    """The layer of the longest LAYERS prefix of `module`."""
    matches = [(len(prefix), rank) for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} has no layer: add it to LAYERS"
    return max(matches)[1]


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from . import a\n")
    (package / "c.py").write_text("from pkg.a import f\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_no_module_imports_a_layer_above_its_own():
    graph = import_graph(PACKAGE)
    upward = [(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert upward == []


@pytest.mark.parametrize("word", ["argparse", "Namespace"])
def test_argparse_lives_only_in_the_command_line(word):
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if word in p.read_text()]
    assert all(u.startswith("cli/") for u in users), users


def test_docstrings_cite_no_file_outside_the_repository():
    files = list(PACKAGE.rglob("*.py")) + list((ROOT / "PatchSampler").rglob("*.py"))
    cited = [str(p.relative_to(ROOT)) for p in files
             if any(name in p.read_text() for name in ("SPEC.md", "DESIGN.md", "SPEC ", "(SPEC"))]
    assert cited == []
