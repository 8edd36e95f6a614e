"""What a run of the module may ask for, and which samplers can answer.

N, K and T ranges of the GUI; the sampler choices: the library's samplers
(`PatchSamplerLib.method.samplers`: learned [T §3.3-3.4], FPS and random [T §4.3]) plus the
module's "all" (compare every available sampler); whether the learned sampler can run for
(prior, N, K, T); what a run will cost (`PatchSamplerLib.method.cost`: the estimate shown before
Apply, the limits a run is held to unless forced). Imports no library at load: the ranges are read
by the widget before PatchSamplerLib is importable, everything else imports it when called.
"""
from __future__ import annotations

import importlib.util
import numbers
from pathlib import Path

N_RANGE, K_RANGE, T_RANGE = (1, 64), (3, 31), (0, 2000)
COMPARE_ALL = "all"
COMPARE_ALL_LABEL = "Compare all"


class SamplerUnavailable(ValueError):
    """A sampler that cannot run here (e.g. no learned sampler model for this N, K)."""


def sampler_choices() -> tuple[str, ...]:
    """The sampler names a run may ask for: the library's ("learned", "fps", "random"), then "all"."""
    from PatchSamplerLib.method.samplers import SAMPLER_NAMES
    return SAMPLER_NAMES + (COMPARE_ALL,)


def choice_label(choice: str) -> str:
    """What the module shows for a sampler choice: "fps" -> "FPS", "all" -> "Compare all"."""
    if choice == COMPARE_ALL:
        return COMPARE_ALL_LABEL
    from PatchSamplerLib.method.samplers import sampler_label
    return sampler_label(choice)


def check_request(n: int, k: int, t: int, sampler: str, seed: int = 0) -> None:
    """Raise ValueError with a user message unless N, K, T, the sampler and the seed are what the
    module offers: N in 1..64, K odd in 3..31, T in 0..2000 (integers: 8.0 is refused, not
    truncated later), sampler in sampler_choices(), seed an integer >= 0."""
    for label, value, (lo, hi) in (("N", n, N_RANGE), ("K", k, K_RANGE), ("T", t, T_RANGE), ("seed", seed, (0, None))):
        if not is_integer(value) or value < lo or (hi is not None and value > hi):
            shown = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{label} must be an integer {shown}, got {value!r}")
    if k % 2 == 0:
        raise ValueError(f"K must be odd (a patch is centred on a voxel), got {k}")
    if sampler not in sampler_choices():
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(sampler_choices())}")


def is_integer(value) -> bool:
    """An int (numpy's too), not a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_segment(segmentation_node, segment_id) -> None:
    """ValueError naming the node's segments unless `segment_id` (a str) is one of its segments."""
    segmentation = segmentation_node.GetSegmentation() if segmentation_node is not None else None
    if segmentation is None:
        raise ValueError(f"no segmentation node given (got {segmentation_node!r})")
    if not isinstance(segment_id, str) or segmentation.GetSegment(segment_id) is None:
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        raise ValueError(f"segment {segment_id!r} is not in {segmentation_node.GetName()}; its segment IDs: "
                         f"{', '.join(map(repr, ids)) or 'none'}")


def find_learned_sampler(prior, n: int, k: int, t: int, sampler_model=None):
    """-> (SamplerModel, notes) for (prior (a ShapePrior), N, K, T), or (None, why it cannot run).

    `sampler_model`: a sampler file (or SamplerModel); None looks up the bundled sampler of the
    prior for (N, K) (PatchSamplerLib.method.sampler.load_learned_sampler)."""
    from PatchSamplerLib.method.sampler import load_learned_sampler
    try:
        return load_learned_sampler(prior, n, k, t, sampler_model)
    except ValueError as exc:
        return None, f"{str(exc).rstrip('. ')}. Use FPS or random, or compare all to run the samplers that are available."


def learned_sampler_status(prior, n: int, k: int, t: int, sampler_model=None) -> str:
    """One line for the module's status label about the learned sampler for (prior, N, K, T),
    from the model files only (works before torch is installed): which file will be used, or
    why none can be. prior: a bundled name or a prior file."""
    from PatchSamplerLib.checkpoints import (CheckpointError, any_sampler_use, bundled_any_samplers,
                                             resolve_prior_path, resolve_sampler_path)
    if sampler_model:
        return f"Learned sampler: {Path(sampler_model).name}"
    try:
        path, note = resolve_sampler_path(resolve_prior_path(prior), n, k, t)
    except CheckpointError as exc:
        return str(exc)
    kind = any_sampler_use(n, k) if path in bundled_any_samplers().values() else ""
    notes = "; ".join(part for part in (kind, note) if part)
    return f"Learned sampler: {path.name}" + (f" ({notes})" if notes else "")


def samplers_to_run(sampler: str, n: int, k: int, t: int, prior, sampler_model=None):
    """(sampler names to run, in registry order; {sampler: why it is skipped}; the learned
    SamplerModel or None) for a choice of sampler_choices().

    A single unavailable sampler raises SamplerUnavailable; "all" runs the available ones and
    lists the others as skipped."""
    from PatchSamplerLib.method.samplers import SAMPLER_NAMES
    learned, reason = None, None
    if sampler in ("learned", COMPARE_ALL):
        learned, notes = find_learned_sampler(prior, n, k, t, sampler_model)
        reason = notes if learned is None else None
    if sampler == COMPARE_ALL:
        run = [s for s in SAMPLER_NAMES if s != "learned" or reason is None]
        return run, ({"learned": reason} if reason else {}), learned
    if sampler == "learned" and reason:
        raise SamplerUnavailable(reason)
    return [sampler], {}, learned


FORCE_HINT = "In the module: tick 'Run anyway' (Advanced) to run it."


def run_estimate_text(n: int, k: int, t: int, device: str = "auto", fit: str = "fast") -> str | None:
    """One line for the module before Apply: the library's estimate of a run of N patches of K^3
    voxels and T steps of latent fit `fit` ("fast" or "adam", `method.fitting`) on `device`
    ("auto" | "cpu" | "cuda"), the one the command line prints
    (`method.cost.estimate_run(...).describe()`), and when it is over a limit, why and how to run
    it anyway. None when torch is not installed (the library cannot be imported yet)."""
    if importlib.util.find_spec("torch") is None:
        return None
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.method.cost import estimate_run
    from PatchSamplerLib.method.fitting import fit_settings
    settings = fit_settings(fit, n * k ** 3, t)
    try:
        estimate = estimate_run(n, k, settings.steps, resolve_device(device), points_per_step=settings.points)
    except ValueError as exc:                   # CUDA asked for, none here
        return str(exc)
    text = f"Estimate: {estimate.describe()}"
    excess = estimate.excess()
    return text if excess is None else f"{text}, over the limit ({excess}). {FORCE_HINT}"


def check_run_cost(n: int, k: int, t: int, prior, force: bool = False, fit: str = "fast") -> None:
    """Refuse (ValueError: the library's message and the module's way out) a run of N, K, T and
    latent fit `fit` with `prior` (a ShapePrior, on the run's device) that is over the time or
    memory limit, unless `force`: the check `pipeline.reconstruct` makes, made before anything runs."""
    from PatchSamplerLib.method.cost import check_affordable, decoder_macs_per_point, estimate_run
    from PatchSamplerLib.method.fitting import fit_settings
    device = next(prior.decoder.parameters()).device
    settings = fit_settings(fit, n * k ** 3, t)
    try:
        check_affordable(estimate_run(n, k, settings.steps, device, decoder_macs_per_point(prior.decoder),
                                      settings.points), force)
    except ValueError as exc:
        raise ValueError(f"{exc}. {FORCE_HINT}") from None


def segment_description(segmentation_node, segment_id: str) -> list[str]:
    """[segment name, terminology entry, segmentation node name] of a segment, in the order
    `PatchSamplerLib.structures` reads a structure or side from them: the TotalSegmentator
    extension names segments "left kidney", "T12 vertebra" and tags them with SNOMED CT
    terminology; a file dragged into Slicer gives a segment "Segment_1" in a node named after the
    file ("vertebrae_T12"), whose name the command line reads; [] when there is no such segment."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segmentation_node and segment_id else None
    if segment is None:
        return []
    return [segment.GetName(), segment.GetTerminology(), segmentation_node.GetName() or ""]


FALLBACK_PRIOR = "kidney"


def prior_of_segment(description: list[str], prior) -> tuple[object, str | None]:
    """(the prior a console run uses, a note or None): `prior` when given (a name, a file or a
    ShapePrior); else the bundled prior of the structure the segment's names say
    (`structures.DEFAULT_PRIORS`: kidney -> kidney, vertebra -> vertebra-anatomical, as the
    command line picks it from the file name), else FALLBACK_PRIOR with a note saying so."""
    from PatchSamplerLib.structures import DEFAULT_PRIORS, first_structure
    if prior is not None:
        return prior, None
    found = first_structure(description)
    if found:
        return DEFAULT_PRIORS[found[0]], None
    names = [description[0], description[-1]] if description else []        # segment and node, not the terminology
    return FALLBACK_PRIOR, (f"no prior given and the segment's names ({', '.join(map(repr, names))}) "
                            f"say no structure: the {FALLBACK_PRIOR} prior was used; pass prior= for another")


def prior_for_segment(description: list[str], prior: str) -> tuple[str | None, str]:
    """(the bundled prior to switch to, a status line saying so) when the segment (`description`,
    see segment_description) is recognisably a kidney or a vertebra and `prior`, a bundled
    prior's name, is one of the other structure; else (None, ""). A prior file ("file") is the
    user's explicit choice and is never switched. Needs no PyTorch (the module calls it when a
    segment is selected). Switches to `structures.DEFAULT_PRIORS` (kidney: "kidney", vertebra:
    "vertebra-anatomical")."""
    from PatchSamplerLib.structures import DEFAULT_PRIORS, first_structure, structure_in_name
    found, current = first_structure(description), structure_in_name(prior)
    if found is None or current is None or current == found[0]:
        return None, ""
    chosen = DEFAULT_PRIORS[found[0]]
    return chosen, (f"Prior set to {chosen}: the segment {description[0]!r} looks like a {found[0]} and the "
                    f"{prior} prior was trained on another structure.")
