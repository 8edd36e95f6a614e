"""The real kidney of Resources/SampleData through the module's logic on real MRML, rendered offscreen.

Shared by Testing/test_slicer_logic.py (small settings, pixel checks) and, run as a script, the
producer of the committed screenshot (the README's settings, bundled kidney prior):

    OMP_NUM_THREADS=2 python Testing/kidney_screenshot.py     # -> Resources/Screenshots/PatchSampler_kidney_fps.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slicer_scene import ROOT, load_segmentation, new_scene  # noqa: E402

KIDNEY_FILE = ROOT / "Resources" / "SampleData" / "kidney_left_1.5mm.nii.gz"
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "PatchSampler_kidney_fps.png"
SCREENSHOT_SIZE = (800, 600)
VIEW_FROM = (-0.8, 1.0, 0.35)        # RAS: the left kidney seen from anterior, left and a little above

# colour classes of a rendered picture, on HSV (hue in [0, 1)); shading changes value, blending
# with the white background lowers saturation, hue stays
COLOUR_CLASSES = {
    "extra (blue)": lambda h, s, v: (h > 0.52) & (h < 0.70) & (s > 0.3),
    "missing (orange)": lambda h, s, v: (h > 0.04) & (h < 0.14) & (s > 0.45),
    "patch (red)": lambda h, s, v: ((h < 0.025) | (h > 0.94)) & (s > 0.15),
    "intersection (grey)": lambda h, s, v: (s < 0.1) & (v > 0.2) & (v < 0.85),
}


def process_kidney(scene, n: int, k: int, t: int, prior, sampler: str = "fps", seed: int = 0):
    """(input segmentation node, ProcessResult) of the logic on the sample kidney loaded as a
    segmentation through MRML storage nodes."""
    from PatchSamplerLogic import PatchSamplerLogic
    node = load_segmentation(scene, KIDNEY_FILE, "kidney_left")
    segment_id = node.GetSegmentation().GetNthSegmentID(0)
    node.GetSegmentation().GetSegment(segment_id).SetName("Left kidney")
    return node, PatchSamplerLogic().process(node, segment_id, n, k, t, sampler=sampler, prior=prior, seed=seed)


def render(output, path, size=SCREENSHOT_SIZE) -> np.ndarray:
    """The first sampler's result segmentation rendered offscreen as Slicer's 3-D view shows it,
    into the PNG `path`; (H, W, 3) uint8 RGB."""
    from offscreen_render import render_segmentations
    return render_segmentations([output.runs[0].segmentation_node], path, size, view_from=VIEW_FROM)


def colour_fractions(rgb: np.ndarray) -> dict[str, float]:
    """Fraction of the picture's pixels in each COLOUR_CLASSES class and of non-background pixels."""
    from matplotlib.colors import rgb_to_hsv
    hsv = rgb_to_hsv(rgb.astype(float) / 255.0)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    fractions = {name: float(test(h, s, v).mean()) for name, test in COLOUR_CLASSES.items()}
    fractions["not background"] = float((rgb < 245).any(axis=-1).mean())
    return fractions


def main() -> int:
    scene = new_scene()
    _, output = process_kidney(scene, n=8, k=11, t=100, prior="kidney")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    pixels = render(output, SCREENSHOT)
    metrics = output.runs[0].result.metrics
    print(f"{SCREENSHOT}: FPS N=8 K=11 T=100, Dice {metrics['dice']:.3f}; colours {colour_fractions(pixels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
