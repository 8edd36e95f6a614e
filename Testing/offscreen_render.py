"""Segmentation nodes rendered offscreen as Slicer's 3-D view shows them, into a PNG (slicer-core,
no application): the pictures of Testing/test_slicer_logic.py and Testing/kidney_screenshot.py.

The recipe: an application logic and a view logic on a private scene holding copies of the nodes
(with their display settings, so the caller's scene, views and layout are untouched), a
displayable-manager group from a private factory (Slicer's singleton factory, used by the
application's own views, is not touched), a render window with an initialised interactor (the
displayable managers need one) and a white background. Needs an OpenGL context: without a
display, slicer_scene (imported here first) selects Mesa through EGL.
"""
from __future__ import annotations

import numpy as np

import slicer_scene  # noqa: F401  (EGL without a display, set before VTK makes a window)

import vtk  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

import slicer  # noqa: E402

THREE_D_DISPLAYABLE_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                                "vtkMRMLModelDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D")


def render_segmentations(segmentation_nodes, png_path, size=(800, 600), view_from=(0.0, 1.0, 0.0),
                         zoom: float = 1.1) -> np.ndarray:
    """Render segmentation nodes offscreen into the PNG `png_path`, `size` (width, height) pixels.

    view_from: RAS direction from the shapes' centre towards the camera (default anterior, as
    Slicer's default 3-D view), superior up; zoom: camera zoom after fitting everything in view.
    Returns the picture, (H, W, 3) uint8 RGB, top row first."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())
    for node in segmentation_nodes:
        copy_into_scene(scene, node)

    renderer, window = vtk.vtkRenderer(), vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    interactor = vtk.vtkGenericRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    factory = slicer.vtkMRMLDisplayableManagerFactory()
    factory.SetMRMLApplicationLogic(app_logic)
    for name in THREE_D_DISPLAYABLE_MANAGERS:
        factory.RegisterDisplayableManager(name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    view_logic = slicer.vtkMRMLViewLogic()
    view_logic.SetMRMLApplicationLogic(app_logic)
    app_logic.GetViewLogics().AddItem(view_logic)
    view_logic.SetMRMLScene(scene)
    view = view_logic.AddViewNode("PatchSamplerSnapshot")
    view.SetBoxVisible(0)
    view.SetAxisLabelsVisible(0)
    view.SetBackgroundColor(1, 1, 1)
    view.SetBackgroundColor2(1, 1, 1)
    group.SetMRMLDisplayableNode(view)

    aim_camera(renderer, view_from, zoom)
    window.Render()
    pixels = window_pixels(window, png_path)
    group.SetMRMLDisplayableNode(None)
    window.Finalize()
    scene.Clear(1)
    return pixels


def copy_into_scene(scene, segmentation_node):
    """A copy of a segmentation node (segments, closed surfaces, display settings) in `scene`."""
    copy = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(copy)
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    copy.CreateClosedSurfaceRepresentation()
    copy.CreateDefaultDisplayNodes()
    if segmentation_node.GetDisplayNode() is not None:
        copy.GetDisplayNode().CopyContent(segmentation_node.GetDisplayNode())
    copy.GetDisplayNode().SetVisibility3D(True)
    return copy


def aim_camera(renderer, view_from, zoom: float) -> None:
    """Look at everything shown from the RAS direction `view_from`, superior up, then zoom."""
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    focal = np.array(camera.GetFocalPoint())
    distance = camera.GetDistance()
    direction = np.asarray(view_from, float) / np.linalg.norm(view_from)
    camera.SetPosition(*(focal + distance * direction))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.Zoom(zoom)
    renderer.ResetCameraClippingRange()


def window_pixels(window, png_path) -> np.ndarray:
    """The rendered window written to `png_path` and returned as (H, W, 3) uint8 RGB, top row first."""
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(png_path))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    rgb = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[..., :3]
    return np.ascontiguousarray(rgb[::-1])
