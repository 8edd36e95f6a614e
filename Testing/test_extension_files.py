"""Static checks of the Slicer extension's files: what cannot run without the Slicer application
(the Qt widget, the CMake build) is at least consistent with the files it relies on."""
import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "PatchSampler"
WIDGET_SOURCE = MODULE / "PatchSampler.py"
LOGIC_SOURCE = MODULE / "PatchSamplerLogic.py"
HELPER_PACKAGE = MODULE / "PatchSamplerMRML"            # the logic's helpers, a package beside it
UI_FILE = MODULE / "Resources" / "UI" / "PatchSampler.ui"


def ui_widgets() -> dict[str, ET.Element]:
    """Widget name -> element of the .ui file."""
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def ui_parameter_names() -> dict[str, str]:
    """Widget name -> its SlicerParameterName dynamic property."""
    out = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                out[name] = prop.find("string").text
    return out


def widget_names_used_by_the_module() -> set[str]:
    """Every `self.ui.<name>` of PatchSampler.py and the names in its PARAMETER_WIDGETS tuple."""
    tree = ast.parse(WIDGET_SOURCE.read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PARAMETER_WIDGETS" for t in node.targets):
            used |= set(ast.literal_eval(node.value))
    return used


def parameter_node_fields() -> set[str]:
    tree = ast.parse(WIDGET_SOURCE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PatchSamplerParameterNode")
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_every_widget_the_module_uses_is_in_the_ui_file():
    used = widget_names_used_by_the_module()
    assert {"applyButton", "segmentSelector", "progressBar", "resultsTableView", "deviceComboBox"} <= used
    missing = used - set(ui_widgets())
    assert not missing, f"PatchSampler.py uses widgets that PatchSampler.ui does not have: {sorted(missing)}"


def test_ui_parameter_bindings_match_the_parameter_node():
    bound = ui_parameter_names()
    fields = parameter_node_fields()
    assert set(bound.values()) <= fields, set(bound.values()) - fields
    # every setting the user types or picks is bound; the rest is handled by the widget code
    assert fields - set(bound.values()) == {"inputSegmentation", "segmentId", "resultsTable"}
    widgets = ui_widgets()
    assert widgets["kSpinBox"].find("property[@name='singleStep']/number").text == "2"    # K odd
    for name, lo, hi in (("nSpinBox", "1", "64"), ("kSpinBox", "3", "31"), ("tSpinBox", "0", "2000")):
        assert widgets[name].find("property[@name='minimum']/number").text == lo
        assert widgets[name].find("property[@name='maximum']/number").text == hi


def cmake_list(path: Path, variable: str) -> list[str]:
    """The entries of `set(<variable> ...)` in a CMakeLists.txt."""
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", path.read_text(), re.S)
    assert match, f"no set({variable} ...) in {path}"
    return [line.split("#")[0].strip() for line in match.group(1).splitlines() if line.split("#")[0].strip()]


def test_the_library_cmake_lists_every_library_file():
    listed = cmake_list(ROOT / "PatchSamplerLib" / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS")
    on_disk = sorted(p.relative_to(ROOT / "PatchSamplerLib").as_posix()
                     for p in (ROOT / "PatchSamplerLib").rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(listed) == on_disk, ("not listed", sorted(set(on_disk) - set(listed)),
                                       "listed but absent", sorted(set(listed) - set(on_disk)))
    assert "WITH_SUBDIR" in (ROOT / "PatchSamplerLib" / "CMakeLists.txt").read_text()   # -> qt-scripted-modules/PatchSamplerLib


def test_the_module_cmake_lists_its_scripts_and_resources():
    cmake = MODULE / "CMakeLists.txt"
    scripts = [s.replace("${MODULE_NAME}", "PatchSampler") for s in cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", "PatchSampler") for s in cmake_list(cmake, "MODULE_PYTHON_RESOURCES")]
    on_disk = sorted(p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(scripts) == on_disk, ("not listed", sorted(set(on_disk) - set(scripts)),
                                        "listed but absent", sorted(set(scripts) - set(on_disk)))
    # Slicer treats every .py directly in the module folder as a module: only the module and its logic
    assert sorted(p.name for p in MODULE.glob("*.py")) == ["PatchSampler.py", "PatchSamplerLogic.py"]
    assert (HELPER_PACKAGE / "__init__.py").is_file() and len(list(HELPER_PACKAGE.glob("*.py"))) > 1
    assert all((MODULE / r).is_file() for r in resources) and len(resources) == 3
    text = cmake.read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_metadata_is_consistent():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    value = lambda key: re.search(rf'set\({key} "([^"]*)"\)', cmake).group(1)          # noqa: E731
    assert "project(PatchSampler)" in cmake and value("EXTENSION_CATEGORY") == "Segmentation"
    assert value("EXTENSION_DEPENDS") == "PyTorch"
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(PatchSampler)",
                 "add_subdirectory(PatchSamplerLib)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                 "include(${Slicer_EXTENSION_CPACK})"):
        assert line in cmake
    screenshot = value("EXTENSION_SCREENSHOTURLS").split("/main/", 1)[1]
    icon = value("EXTENSION_ICONURL").split("/main/", 1)[1]
    assert (ROOT / screenshot).is_file() and (ROOT / icon).is_file()
    from matplotlib.image import imread
    assert imread(ROOT / icon).shape[:2] == (128, 128)
    entry = json.loads((ROOT / "PatchSampler.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}          # catalog entry schema v1.0.2
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    s4ext = dict(line.split(" ", 1) for line in (ROOT / "PatchSampler.s4ext").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    assert s4ext["category"] == "Segmentation" and s4ext["depends"] == "PyTorch"
    assert s4ext["screenshoturls"] == value("EXTENSION_SCREENSHOTURLS") and s4ext["scmurl"] == entry["scm_url"]


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_module_files_import_neither_torch_nor_the_library_at_load():
    assert top_level_imports(WIDGET_SOURCE) <= {"enum", "logging", "os", "pathlib", "sys", "typing", "numpy", "vtk",
                                                "qt", "slicer", "PatchSamplerLogic", "PatchSamplerMRML"}
    assert top_level_imports(LOGIC_SOURCE) <= {"__future__", "collections", "os", "warnings", "dataclasses", "slicer",
                                                "PatchSamplerMRML"}
    helpers = sorted(HELPER_PACKAGE.glob("*.py"))
    assert helpers
    for path in helpers:
        assert top_level_imports(path) <= {"__future__", "importlib", "logging", "math", "numbers", "re", "dataclasses",
                                           "pathlib", "numpy", "vtk", "slicer", "PatchSamplerMRML"}, path.name


def test_the_logic_loads_and_reports_torch_missing_when_torch_is_absent():
    """A Python where `import torch` fails: the logic imports, neither torch nor the library is
    imported, and it says torch must be installed."""
    code = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, 'PatchSampler'); "
            "import PatchSamplerLogic as L; L.PatchSamplerLogic(); "
            "loaded = [m for m in sys.modules if sys.modules[m] is not None]; "
            "assert 'torch' not in loaded and not any(m.startswith('PatchSamplerLib') for m in loaded); "
            "from PatchSamplerMRML.dependencies import missing_packages; print(missing_packages())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['torch>=2.0']"


# Stand-ins for the parts of Slicer that exist only in the application (Qt, the scripted-module
# base classes, the parameter node wrapper): enough to execute PatchSampler.py's module level.
APPLICATION_STUBS = """
import sys, types, slicer
def module(name, **attributes):
    m = types.ModuleType(name); m.__dict__.update(attributes); sys.modules[name] = m; return m
class Base:
    def __init__(self, parent=None): self.parent = parent
class Validator:
    pass
class WithinRange(Validator):
    def __init__(self, lo, hi): self.lo, self.hi = lo, hi
module("qt", Qt=types.SimpleNamespace(ToolTipRole=3))
slicer.i18n = module("slicer.i18n", tr=lambda text: text)
slicer.parameterNodeWrapper = module("slicer.parameterNodeWrapper", Validator=Validator, WithinRange=WithinRange,
                                     parameterNodeWrapper=lambda cls: cls)
slicer.ScriptedLoadableModule = module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base,
    ScriptedLoadableModuleLogic=Base, ScriptedLoadableModuleTest=Base, ScriptedLoadableModuleWidget=Base)
"""


def run_module_without_torch(body: str) -> str:
    """Run `body` after importing PatchSampler.py as M under APPLICATION_STUBS in a Python where
    `import torch` fails; check torch was not imported; the process's stdout."""
    code = (APPLICATION_STUBS + "sys.modules['torch'] = None\nsys.path.insert(0, 'PatchSampler')\n"
            "import PatchSampler as M\n" + body
            + "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_module_loads_without_torch():
    """PatchSampler.py's module level (imports, bootstrap, parameter node, enums) runs in a Python
    where `import torch` fails, and the Module's metadata is what the issue asks for."""
    out = run_module_without_torch(
        "parent = types.SimpleNamespace()\n"
        "M.PatchSampler(parent)\n"
        "assert parent.categories == ['Segmentation'], parent.categories\n"
        "assert all(word in parent.helpText for word in ('<b>N</b>', '<b>K</b>', '<b>T</b>', 'FPS', 'Random', "
        "'Learned', 'Compare all'))\n"
        "assert [s.label() for s in M.Sampler] == ['Learned', 'FPS', 'Random', 'Compare all']\n"
        "assert M.PatchSamplerParameterNode.n == 8 and M.PatchSamplerParameterNode.k == 11\n"
        "assert M.PatchSamplerParameterNode.t == 100 and M.PatchSamplerParameterNode.sampler is M.Sampler.FPS\n"
        "print('slice fit steps', M.PatchSamplerParameterNode.sliceFitSteps)\n"
        "assert M.chosenFile(M.pathlib.Path()) is None and M.chosenFile(M.pathlib.Path('p.pt')) == 'p.pt'\n"
        "assert not M.cudaAvailable()\n"
        "bundled = {f.stem[len('prior_'):] for f in M.pathlib.Path('Resources/Models').glob('prior_*.pt')}\n"
        "assert {p.value for p in M.Prior if p is not M.Prior.FILE} <= bundled, bundled\n"
        "assert 'vertebra-anatomical' in [p.value for p in M.Prior] and len({p.label() for p in M.Prior}) == len(M.Prior)\n"
        "print('loaded')\n")
    assert out.strip().endswith("loaded")
    from PatchSamplerLib.sparse.reconstruction import DEFAULT_SPARSE_STEPS
    assert f"slice fit steps {DEFAULT_SPARSE_STEPS}" in out          # the module's slice fit = the CLI's


def test_selecting_a_segment_switches_the_prior_without_torch():
    """The widget's reaction to a selected segment (PatchSamplerWidget.matchPriorToSegment) in a
    Python where `import torch` fails: a "T12 vertebra" segment switches the bundled kidney prior
    to the anatomical vertebra one and says so; a prior file is kept."""
    out = run_module_without_torch(
        "segment = slicer.vtkSegment()\n"
        "segment.SetName('T12 vertebra')\n"
        "segment_id = 'Segment_1'\n"
        "segmentation = types.SimpleNamespace(GetSegment=lambda i: segment if i == segment_id else None)\n"
        "node = types.SimpleNamespace(GetSegmentation=lambda: segmentation, GetName=lambda: 'Segmentation')\n"
        "widget = types.SimpleNamespace(ui=types.SimpleNamespace(statusLabel=types.SimpleNamespace(text='')))\n"
        "widget._parameterNode = types.SimpleNamespace(inputSegmentation=node, segmentId=segment_id, "
        "prior=M.Prior.KIDNEY)\n"
        "M.PatchSamplerWidget.matchPriorToSegment(widget)\n"
        "assert widget._parameterNode.prior is M.Prior.VERTEBRA_ANATOMICAL, widget._parameterNode.prior\n"
        "assert 'Prior set to vertebra-anatomical' in widget.ui.statusLabel.text\n"
        "widget._parameterNode.prior, widget.ui.statusLabel.text = M.Prior.FILE, ''\n"
        "M.PatchSamplerWidget.matchPriorToSegment(widget)\n"
        "assert widget._parameterNode.prior is M.Prior.FILE and widget.ui.statusLabel.text == ''\n"
        "print('switched')\n")
    assert out.strip().endswith("switched")


def test_the_module_requirements_leave_torch_to_pytorch_utils():
    lines = [line.split("#")[0].strip() for line in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert "torch>=2.0" in requirements and not any(r.startswith("torch=") for r in requirements)
    assert not any(r.startswith("higher") for r in requirements)      # a test-only dependency, not for Slicer


def test_the_committed_screenshot_shows_the_result():
    from kidney_screenshot import SCREENSHOT, colour_fractions
    from matplotlib.image import imread
    pixels = (imread(SCREENSHOT)[..., :3] * 255).round().astype(np.uint8)
    fractions = colour_fractions(pixels)
    assert pixels.shape == (600, 800, 3) and 0.05 < fractions["not background"] < 0.9
    for name in ("extra (blue)", "missing (orange)", "patch (red)", "intersection (grey)"):
        assert fractions[name] > 0.002, (name, fractions)
