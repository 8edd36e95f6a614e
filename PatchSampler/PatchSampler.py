"""PatchSampler: reconstruct a segmented shape from a few small patches (3D Slicer module).

Module (metadata and help), Widget (thin: the .ui, a parameter node, progress and Cancel) and
Test (self-test). All computation and every MRML change is in the Qt-free PatchSamplerLogic.py
and its helper package PatchSamplerMRML/, tested outside Slicer on real MRML
(Testing/test_slicer_logic.py).
"""
import enum
import logging
import os
import pathlib
import sys
from typing import Annotated, Optional

import numpy as np
import vtk

import qt
import slicer
from slicer import vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Validator, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# Bootstrap. Slicer puts only this module's folder on sys.path (PatchSamplerLogic.py and the
# PatchSamplerMRML package are there). Loaded from source (additional
# module path = <repository>/PatchSampler), the core library PatchSamplerLib is one level up, in
# the extension root, which is appended here. In a built extension PatchSamplerLib is installed
# next to this file (PatchSamplerLib/CMakeLists.txt) and this does nothing.
_EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_EXTENSION_ROOT, "PatchSamplerLib")) and _EXTENSION_ROOT not in sys.path:
    sys.path.append(_EXTENSION_ROOT)

from PatchSamplerLogic import PatchSamplerLogic  # noqa: E402
from PatchSamplerMRML.choices import (K_RANGE, N_RANGE, T_RANGE, choice_label, learned_sampler_status,  # noqa: E402
                                      prior_for_segment, run_estimate_text, segment_description)
from PatchSamplerMRML.dependencies import install_packages, missing_packages  # noqa: E402
from PatchSamplerMRML.geometry import array_to_image  # noqa: E402

HELP_TEXT = """
Reconstructs a segment from <b>N</b> small cubic patches of <b>K</b>&times;<b>K</b>&times;<b>K</b>
voxels with an implicit neural shape prior, and shows where the patches were placed and where the
reconstruction is wrong.
<ul>
<li><b>N</b>: number of patches (1-64). <b>K</b>: patch edge in voxels (odd, 3-31); the prior
sees N&middot;K&sup3; voxels of the segment and nothing else.</li>
<li><b>T</b>: optimisation steps that fit the prior's shape code to the patch voxels (0-2000). By
default each step looks at a random eighth of the patch voxels, favouring those on the shape's
edge: 5-18 times faster, within 0.002 Dice on average but up to about two Dice points lower on a
single shape; <i>Thesis fit</i> (Advanced) makes every step look at all of them, as the thesis does.</li>
<li><b>Sampler</b>: where the patches go. <i>FPS</i> (farthest point sampling) spreads them over
the shape; <i>Random</i> picks segment voxels at random; <i>Learned</i> uses a sampler network
trained for this N and K, else one trained for every N and K (installed for every bundled prior;
the status line names the model used); <i>Compare all</i> runs every available
sampler and fills one table row per sampler.</li>
<li><b>Prior</b>: the shape prior: bundled kidney or vertebra (trained on hand-made solids), their
<i>anatomical family</i> versions (trained on anatomically modelled vertebrae T10-L5 and kidneys;
the vertebra one was better on the real vertebra tested), or a prior file. Selecting a segment named
or tagged as a kidney or a vertebra (as TotalSegmentator's are) switches a bundled prior of the
other structure to one of its own; a run warns when the segment and the prior differ.</li>
</ul>
Results: per sampler a segmentation "&lt;segment&gt; - &lt;sampler&gt; patches" with the patch boxes,
the reconstruction and its errors (<span style="color:#1f78d8">extra</span> = reconstruction only,
<span style="color:#ff8c00">missing</span> = segment only, grey = both), the patch centres as a point
list, and Dice / ASD / HD95 and seconds per stage in a table. Re-running replaces that sampler's
results; the input is never modified. Warnings (e.g. a segment of several connected pieces, with
their sizes) are shown under Apply and in the table's Note.
<p>Under the parameters: the estimated time and memory of the run. A run above 10 minutes of fitting
or half of the device's memory is refused unless <i>Run anyway</i> is ticked (Advanced).
<i>Keep only the largest connected piece</i> (Advanced, on by default) drops stray specks.</p>
<p><b>Reconstruct from slices</b>: reconstructs the whole shape from a segment drawn on a few slice
views (known are the voxels those view planes pass through, also on a volume tilted to the views;
everything else is unknown), or from every s-th slice of a full segment; optionally scored against a
full segment. Output: "&lt;segment&gt; - reconstruction from slices".</p>
See the <a href="https://github.com/PatchSampler/SlicerPatchSampler#3d-slicer">documentation</a>.
"""


class PatchSampler(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PatchSampler")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["PatchSampler developers"]
        self.parent.helpText = HELP_TEXT
        self.parent.acknowledgementText = _(
            "Implements <i>Informed Patch Sampling for 3D Medical Image Reconstruction</i> (2026) and the "
            "implicit shape model of Amiranashvili et al., MIDL 2022. Sample data: TotalSegmentator (Apache-2.0).")


# ---------------------------------------------------------------------------- parameter node
class Sampler(enum.Enum):
    LEARNED = "learned"
    FPS = "fps"
    RANDOM = "random"
    ALL = "all"

    def label(self):
        return choice_label(self.value)


class Prior(enum.Enum):
    """The bundled priors (Resources/Models/prior_<value>.pt) and a prior file. The anatomical
    ones were trained on the anatomical shape families (issue #17; their numbers on real
    TotalSegmentator shapes: results/real/README.md)."""
    KIDNEY = "kidney"
    VERTEBRA = "vertebra"
    KIDNEY_ANATOMICAL = "kidney-anatomical"
    KIDNEY_ANATOMICAL_LEFT = "kidney-anatomical-left"
    VERTEBRA_ANATOMICAL = "vertebra-anatomical"
    FILE = "file"

    def label(self):
        return {"kidney": "Kidney (bundled)", "vertebra": "Vertebra (bundled)",
                "kidney-anatomical": "Kidney, anatomical family (bundled)",
                "kidney-anatomical-left": "Kidney, anatomical family, one side (bundled)",
                "vertebra-anatomical": "Vertebra, anatomical family (bundled)",
                "file": "Prior file ..."}[self.value]


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {"auto": "Auto (CUDA when present)", "cpu": "CPU", "cuda": "CUDA"}[self.value]


class Orientation(enum.Enum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    def label(self):
        return self.value.capitalize()


class Odd(Validator):
    """Rejects even integers (a patch of odd size K is centred on a voxel)."""

    def validate(self, value):
        if value % 2 == 0:
            raise ValueError(f"K must be odd, got {value}")


@parameterNodeWrapper
class PatchSamplerParameterNode:
    """The module's settings, saved with the scene. Names match the .ui's SlicerParameterName."""
    inputSegmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    n: Annotated[int, WithinRange(*N_RANGE)] = 8
    k: Annotated[int, WithinRange(*K_RANGE), Odd()] = 11
    t: Annotated[int, WithinRange(*T_RANGE)] = 100
    sampler: Sampler = Sampler.FPS
    prior: Prior = Prior.KIDNEY
    priorFile: pathlib.Path
    samplerModelFile: pathlib.Path
    device: Device = Device.AUTO
    seed: Annotated[int, WithinRange(0, 99999)] = 0
    resultsTable: vtkMRMLTableNode
    sliceMode: bool = False
    sliceOrientation: Orientation = Orientation.AXIAL
    sliceStep: Annotated[int, WithinRange(0, 64)] = 0
    sliceFitSteps: Annotated[int, WithinRange(1, 5000)] = 300     # reconstruct-slices' --steps (DEFAULT_SPARSE_STEPS)
    largestComponent: bool = True
    force: bool = False
    thesisFit: bool = False


def parameterNode() -> PatchSamplerParameterNode:
    """The scene's singleton PatchSampler parameter node (created on first use)."""
    logic = ScriptedLoadableModuleLogic()
    logic.moduleName = "PatchSampler"
    return PatchSamplerParameterNode(logic.getParameterNode())


def fitChoice(p) -> str:
    """The library's latent fit of the module's settings: "adam" with Thesis fit ticked, else "fast"."""
    return "adam" if p.thesisFit else "fast"


def chosenFile(path) -> Optional[str]:
    """A ctkPathLineEdit's path, or None when it is empty."""
    text = str(path) if path is not None else ""
    return text if text not in ("", ".") else None


def cudaAvailable() -> bool:
    """True when torch is installed and sees a CUDA device (torch is imported only if installed)."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        return False
    import torch
    return torch.cuda.is_available()


# ---------------------------------------------------------------------------- widget
class PatchSamplerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: binds the .ui to the parameter node, calls PatchSamplerLogic().process() with a
    progress callback and a cancel flag, and shows the results table."""

    PARAMETER_WIDGETS = ("segmentSelector", "nSpinBox", "kSpinBox", "tSpinBox", "samplerComboBox",
                         "priorComboBox", "priorFileLineEdit", "samplerModelLineEdit", "deviceComboBox",
                         "seedSpinBox", "sliceModeCheckBox", "sliceOrientationComboBox", "sliceStepSpinBox",
                         "sliceFitStepsSpinBox", "referenceSegmentComboBox", "largestComponentCheckBox",
                         "forceCheckBox", "thesisFitCheckBox")

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._cancelRequested = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PatchSampler.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PatchSamplerLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentSelectionChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentSelectionChanged)
        self.ui.kSpinBox.connect("editingFinished()", self.onKEditingFinished)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.progressBar.hide()
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(parameterNode())
        if not self._parameterNode.inputSegmentation:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if first:
                self._parameterNode.inputSegmentation = first

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.greyOutUnavailableDevices()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def greyOutUnavailableDevices(self):
        """Disable the CUDA entry of the device combo box when torch sees no CUDA device."""
        combo = self.ui.deviceComboBox
        index = combo.findText(Device.CUDA.label())
        if index >= 0:
            available = cudaAvailable()
            combo.model().item(index).setEnabled(available)
            combo.setItemData(index, "" if available else _("No CUDA device (or PyTorch is not installed yet)"),
                              qt.Qt.ToolTipRole)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        """The segment selector (not bindable) and the state of Apply and of the file fields."""
        p = self._parameterNode
        if p is None:
            return
        wasBlocked = self.ui.segmentSelector.blockSignals(True)
        self.ui.segmentSelector.setCurrentNode(p.inputSegmentation)
        self.ui.segmentSelector.setCurrentSegmentID(p.segmentId)
        self.ui.segmentSelector.blockSignals(wasBlocked)
        self.ui.priorFileLineEdit.setVisible(p.prior == Prior.FILE)
        for name in ("nSpinBox", "kSpinBox", "tSpinBox", "samplerComboBox"):
            getattr(self.ui, name).enabled = not p.sliceMode and not self._running
        if p.resultsTable:
            self.ui.resultsTableView.setMRMLTableNode(p.resultsTable)
        if self._running:
            return
        ready = bool(p.inputSegmentation and p.segmentId)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Reconstruct the selected segment") if ready else _("Select a segment")
        self.showEstimate(p)
        if p.sampler == Sampler.LEARNED:
            prior = chosenFile(p.priorFile) if p.prior == Prior.FILE else p.prior.value
            self.ui.statusLabel.text = learned_sampler_status(prior, p.n, p.k, p.t, chosenFile(p.samplerModelFile))

    def showEstimate(self, p):
        """The library's estimate of a patch run with the current N, K, T and device, under the
        parameters and in Apply's tooltip (nothing before PyTorch is installed, or in slice mode)."""
        estimate = None if p.sliceMode else run_estimate_text(p.n, p.k, p.t, p.device.value, fitChoice(p))
        self.ui.estimateLabel.text = estimate or ""
        self.ui.estimateLabel.setVisible(bool(estimate))
        if estimate and self.ui.applyButton.enabled:
            self.ui.applyButton.toolTip = f"{self.ui.applyButton.toolTip}. {estimate}"

    def onSegmentSelectionChanged(self, *args):
        if self._parameterNode is None:
            return
        self._parameterNode.inputSegmentation = self.ui.segmentSelector.currentNode()
        self._parameterNode.segmentId = self.ui.segmentSelector.currentSegmentID() or ""
        self.fillReferenceSegments()
        self.matchPriorToSegment()

    def matchPriorToSegment(self):
        """A segment named (or tagged by terminology) as a kidney or a vertebra gets a bundled prior
        of its structure when the chosen bundled prior is of the other one (a prior file is kept);
        the status line says so."""
        p = self._parameterNode
        chosen, why = prior_for_segment(segment_description(p.inputSegmentation, p.segmentId), p.prior.value)
        if chosen is not None:
            p.prior = Prior(chosen)
            self.ui.statusLabel.text = why

    def fillReferenceSegments(self):
        """The other segments of the input node, for scoring a reconstruction from slices."""
        combo, node = self.ui.referenceSegmentComboBox, self.ui.segmentSelector.currentNode()
        combo.clear()
        combo.addItem(_("(none)"), "")
        if node is None:
            return
        segmentation = node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(i)
            if segmentId != self._parameterNode.segmentId:
                combo.addItem(segmentation.GetNthSegment(i).GetName(), segmentId)

    def onKEditingFinished(self):
        """Typed even K: round up to the next odd size (the spin box steps by 2)."""
        value = self.ui.kSpinBox.value
        if value % 2 == 0:
            self.ui.kSpinBox.value = min(value + 1, K_RANGE[1])

    # -------------------------------------------------------------------- run
    def onApplyButton(self):
        if self._running:
            self._cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling ...")
            return
        with slicer.util.tryWithErrorDisplay(_("PatchSampler failed."), waitCursor=False):
            if self.ensureDependencies():
                self.runLogic()

    def ensureDependencies(self) -> bool:
        """Install missing Python packages after the user confirms; False when they declined."""
        missing = missing_packages()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("PatchSampler needs these Python packages, which are not installed yet:\n\n{packages}\n\n"
                  "Install them now? This downloads several hundred MB and may take a few minutes.").format(
                    packages=", ".join(missing)), windowTitle=_("PatchSampler: install dependencies")):
            self.ui.statusLabel.text = _("Dependencies not installed: nothing was run.")
            return False
        with slicer.util.WaitCursor():
            install_packages(missing, log=self.showStatus)
        self.greyOutUnavailableDevices()
        return True

    def runLogic(self):
        from PatchSamplerLib.pipeline import Cancelled      # torch is installed by now
        p = self._parameterNode
        prior = chosenFile(p.priorFile) if p.prior == Prior.FILE else p.prior.value
        if prior is None:
            raise ValueError(_("Choose a prior file, or a bundled prior."))
        if p.sliceMode:
            self.runSlices(prior)
            return
        self.setRunning(True)
        try:
            output = self.logic.process(
                p.inputSegmentation, p.segmentId, p.n, p.k, p.t, sampler=p.sampler.value, prior=prior,
                device=p.device.value, seed=p.seed, sampler_model=chosenFile(p.samplerModelFile),
                largest_component=p.largestComponent, force=p.force, fit=fitChoice(p), progress=self.onProgress,
                should_cancel=lambda: self._cancelRequested)
        except Cancelled:
            self.showStatus(_("Cancelled: the scene is unchanged."))
            return
        finally:
            self.setRunning(False)
        p.resultsTable = output.table_node
        summary = ", ".join(f"{choice_label(run.sampler)} Dice {run.result.metrics['dice']:.3f}" for run in output.runs)
        self.showStatus(summary, output.notes())

    def runSlices(self, prior):
        """Reconstruct from slices (PatchSamplerLogic.process_slices) and say how it went."""
        from PatchSamplerLib.pipeline import Cancelled
        p = self._parameterNode
        self.setRunning(True)
        try:
            run = self.logic.process_slices(
                p.inputSegmentation, p.segmentId, p.sliceOrientation.value, step=p.sliceStep or None,
                referenceSegmentId=self.ui.referenceSegmentComboBox.currentData or None, prior=prior,
                device=p.device.value, seed=p.seed, steps=p.sliceFitSteps, progress=self.onProgress,
                should_cancel=lambda: self._cancelRequested)
        except Cancelled:
            self.showStatus(_("Cancelled: the scene is unchanged."))
            return
        finally:
            self.setRunning(False)
        m = run.result.metrics
        text = _("Known: {known}. {name} added.").format(known=run.sparse.description,
                                                         name=run.segmentation_node.GetName())
        if m:
            text += f" Dice {m['dice']:.3f}, ASD {m['asd_mm']:.2f} mm, HD95 {m['hd95_mm']:.2f} mm"
        self.showStatus(text, run.result.warnings)

    def setRunning(self, running: bool):
        """Apply <-> Cancel; parameters locked while a run is in progress."""
        self._running, self._cancelRequested = running, False
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = True
        for name in self.PARAMETER_WIDGETS:
            getattr(self.ui, name).enabled = not running
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.value = 0
        if not running:
            self.updateGUIFromParameterNode()

    def onProgress(self, message: str, fraction: float):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.setFormat(f"{message} (%p%)")
        slicer.app.processEvents()        # keeps Cancel clickable

    def showStatus(self, text: str, warnings=()):
        """The status line: `text`, then each of `warnings` on its own line (also logged as warnings)."""
        logging.info(text)
        for warning in warnings:
            logging.warning(warning)
        self.ui.statusLabel.text = "\n".join([text, *warnings])
        slicer.app.processEvents()


# ---------------------------------------------------------------------------- self-test
class PatchSamplerTest(ScriptedLoadableModuleTest):
    """Builds a synthetic vertebra in the scene, runs the logic and checks the output nodes.
    Skipped when PyTorch is not installed or no vertebra prior is bundled."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SyntheticVertebra()

    def test_SyntheticVertebra(self):
        if missing_packages():
            self.skipTest("PyTorch or another dependency is not installed")
        from PatchSamplerLib.checkpoints import bundled_models
        from PatchSamplerLib.data.synthetic import make_shape
        from PatchSamplerLib.method.metrics import dice
        if "vertebra" not in bundled_models():
            self.skipTest("no bundled vertebra prior")
        self.delayDisplay("Building a synthetic vertebra")
        shape = make_shape("vertebra", 99, 0, 0.5)          # 2 mm voxels
        ijkToRas = np.diag([-shape.spacing[0], -shape.spacing[1], shape.spacing[2], 1.0])
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Synthetic vertebra")
        node.CreateDefaultDisplayNodes()
        segment = slicer.vtkSegment()
        segment.SetName("Vertebra")
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                                  array_to_image(shape.mask, ijkToRas))
        node.GetSegmentation().AddSegment(segment)
        segmentId = node.GetSegmentation().GetNthSegmentID(0)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()

        self.delayDisplay("Reconstructing from 8 patches of 7^3 voxels")
        output = PatchSamplerLogic().process(node, segmentId, n=8, k=7, t=50, sampler="all", prior="vertebra")
        self.assertEqual([run.sampler for run in output.runs], ["fps", "random"])
        self.assertIn("learned", output.skipped)
        fps = output.runs[0]
        self.assertEqual(fps.segmentation_node.GetName(), "Vertebra - FPS patches")
        names = [fps.segmentation_node.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(fps.segmentation_node.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, [f"Patch {i}" for i in range(1, 9)] + ["Reconstruction", "Intersection", "Extra",
                                                                         "Missing"])
        self.assertEqual(fps.centres_node.GetNumberOfControlPoints(), 8)
        self.assertEqual(output.table_node.GetNumberOfRows(), 3)
        self.assertAlmostEqual(fps.result.metrics["dice"], dice(fps.result.reconstruction, shape.mask), places=9)
        self.assertGreater(fps.result.metrics["dice"], 0.5)
        # 2 samplers x (segmentation + display, point list + display) + table
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore + 9)
        self.delayDisplay("Test passed")
