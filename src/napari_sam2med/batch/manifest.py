"""Batch manifests (JSON, CSV or a folder), validated completely before any work starts.

JSON::

    {"volumes": [
        {"image": "a.nii.gz", "prompts": "a.json", "out": "a_labels.tif"},
        {"image": "b.tif", "box": [slice, row0, col0, row1, col1], "out": "b_labels.zarr"},
        {"image": "c.tif", "auto": true, "out": "c_labels.tif"}
    ]}

CSV: the same keys as columns (``image,prompts,box,auto,out``); ``box`` is five numbers
separated by spaces, commas or inside brackets. ``image`` and ``prompts`` are relative to the
manifest's folder, ``out`` to the output folder (default ``<image name>_labels.tif``).
A folder instead of a manifest means: every volume in it with a ``<name>.prompts.json``
next to it.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.prompts import PromptSet
from ..engine.volume import check_output, label_suffix, open_volume
from ..io import stack_name

__all__ = ["VolumeJob", "ManifestError", "load_manifest", "load_folder", "load_jobs", "VOLUME_SUFFIXES"]

KEYS = ("image", "prompts", "box", "auto", "out")
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr", ".nii", ".nii.gz")
PROMPTS_SUFFIX = ".prompts.json"
_TRUE, _FALSE = ("1", "true", "yes", "y"), ("", "0", "false", "no", "n")


class ManifestError(ValueError):
    """Every problem of a manifest, one line each (``problems``)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{len(problems)} problem(s) in the manifest: " + "; ".join(problems))


@dataclass(frozen=True)
class VolumeJob:
    """One volume to segment: absolute paths and prompts in the CLI's prompt JSON format.

    Attributes
    ----------
    index : int
        Position in the manifest (0-based).
    image : Path
        The volume.
    out : Path
        The label file to write.
    prompts : dict
        ``{"prompts": [...]}`` as ``sam2med propagate --prompts`` reads it.
    source : str
        Where the prompts came from (a file path, ``"box"`` or ``"auto"``), for the sidecar.
    auto : bool
        No prompts: the AutoSAM2 prompt encoder segments the volume (``prompts`` is empty).
    """

    index: int
    image: Path
    out: Path
    prompts: dict
    source: str
    auto: bool = False

    @property
    def name(self) -> str:
        return self.image.name


def _is_volume(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(VOLUME_SUFFIXES)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"auto must be true or false, got {value!r}")


def _parse_box(value: Any) -> list[float]:
    if isinstance(value, str):
        value = [float(v) for v in re.findall(r"-?\d+(?:\.\d*)?(?:[eE]-?\d+)?", value)]
    if not isinstance(value, (list, tuple)) or len(value) != 5:
        raise ValueError("box must be [slice, row0, col0, row1, col1]")
    s = value[0]
    if float(s) != int(float(s)):
        raise ValueError("box slice must be an integer")
    return [int(float(s))] + [float(v) for v in value[1:]]


def _read_entries(manifest: Path) -> list[dict]:
    if manifest.suffix.lower() == ".csv":
        with open(manifest, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            unknown = sorted(set(reader.fieldnames or ()) - set(KEYS))
            if "image" not in (reader.fieldnames or ()):
                raise ManifestError([f"{manifest.name}: CSV needs an 'image' column (columns: {','.join(KEYS)})"])
            if unknown:
                raise ManifestError([f"{manifest.name}: unknown CSV column(s) {', '.join(unknown)}"])
            return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError([f"{manifest.name} is not valid JSON: {err.msg} (line {err.lineno})"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("volumes"), list):
        raise ManifestError([f'{manifest.name}: a JSON manifest is {{"volumes": [...]}}'])
    return data["volumes"]


def _read_prompts(entry: dict, base: Path) -> tuple[dict, str]:
    if "box" in entry:
        s, *box = _parse_box(entry["box"])
        return {"prompts": [{"object": 1, "slice": s, "box": box}]}, "box"
    path = (base / str(entry["prompts"])).expanduser()
    if not path.is_file():
        raise ValueError(f"prompts file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} (line {err.lineno})") from None


def _check_entry(k: int, entry: Any, base: Path, out_dir: Path, axis: str,
                 prompt_encoder: bool = False) -> tuple[VolumeJob | None, list[str]]:
    """Validate one entry: the job, or None and every problem found in it."""
    if not isinstance(entry, dict):
        return None, ["an entry must be an object with image, prompts/box/auto and out"]
    problems: list[str] = []

    def check(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, OSError) as err:
            problems.append(str(err))
            return None

    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    if not entry.get("image"):
        return None, problems + ["needs an 'image'"]
    image = (base / str(entry["image"])).expanduser()
    auto = check(_parse_bool, entry.get("auto"))
    given = [key for key, on in (("prompts", "prompts" in entry), ("box", "box" in entry), ("auto", auto)) if on]
    if len(given) != 1:
        problems.append("give exactly one of prompts, box or auto")
    elif auto and not prompt_encoder:
        problems.append("auto entries need an AutoSAM2 prompt encoder (--prompt-encoder NAME|PATH, or the Batch dock's Prompt encoder)")
    out = out_dir / str(entry.get("out") or f"{stack_name(image)}_labels.tif")
    check(label_suffix, out)
    stack = None
    if not image.exists():
        problems.append(f"image not found: {image}")
    else:  # opened as the workers will (lazily: only the header is read here)
        stack = check(open_volume, image, axis=axis)
    prompts = check(_read_prompts, entry, base) if given in (["prompts"], ["box"]) else None
    if stack is not None and prompts is not None:  # every prompt in range of this volume
        check(PromptSet.from_json, prompts[0], len(stack), stack.frame_shape)
    if stack is not None and not problems:
        check(check_output, out, stack)  # e.g. a .dcm output needs a DICOM input
    if problems:
        return None, problems
    if auto:
        return VolumeJob(k, image.resolve(), out.resolve(), {}, "auto", auto=True), []
    return VolumeJob(k, image.resolve(), out.resolve(), prompts[0], prompts[1]), []


def _validate(entries: list, base: Path, out_dir: Path, where: str, axis: str,
              prompt_encoder: bool = False) -> list[VolumeJob]:
    jobs, problems, seen = [], [], {}
    if not entries:
        raise ManifestError([f"{where}: no volumes"])
    for k, entry in enumerate(entries):
        label = f"{where} entry {k + 1} ({entry.get('image', '?') if isinstance(entry, dict) else '?'})"
        job, found = _check_entry(k, entry, base, out_dir, axis, prompt_encoder)
        problems += [f"{label}: {p}" for p in found]
        if job is None:
            continue
        if job.out in seen:
            problems.append(f"{label}: output {job.out.name} is also entry {seen[job.out] + 1}'s")
            continue
        seen[job.out] = k
        jobs.append(job)
    if problems:
        raise ManifestError(problems)
    return jobs


def load_manifest(manifest: str | Path, out_dir: str | Path, *, axis: str = "axial",
                  prompt_encoder: bool = False) -> list[VolumeJob]:
    """Read and validate a JSON or CSV manifest.

    Parameters
    ----------
    manifest : path
        ``.json`` or ``.csv``; relative ``image``/``prompts`` paths are relative to its folder.
    out_dir : path
        Folder that relative ``out`` paths are relative to.
    axis : str
        Slices the prompts refer to (``axial``, ``coronal``, ``sagittal``), as ``propagate --axis``.
    prompt_encoder : bool
        Whether an AutoSAM2 prompt encoder is given (``auto`` entries are refused without one).

    Returns
    -------
    list of VolumeJob

    Raises
    ------
    ManifestError
        Listing every problem found (missing files, unreadable volumes, prompts out of range,
        bad or duplicate outputs), one line each.
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise ManifestError([f"manifest not found: {manifest}"])
    if manifest.suffix.lower() not in (".json", ".csv"):
        raise ManifestError([f"manifest {manifest.name!r} must be a .json or .csv file"])
    entries = _read_entries(manifest)
    return _validate(entries, manifest.parent, Path(out_dir), manifest.name, axis, prompt_encoder)


def load_folder(folder: str | Path, out_dir: str | Path, *, axis: str = "axial") -> list[VolumeJob]:
    """Every volume of ``folder`` that has a ``<name>.prompts.json`` next to it.

    Volumes without a prompts file are reported as problems (``ManifestError``).
    """
    folder = Path(folder).expanduser()
    entries = []
    for path in sorted(p for p in folder.iterdir() if _is_volume(p)):
        entries.append({"image": path.name, "prompts": f"{stack_name(path)}{PROMPTS_SUFFIX}"})
    return _validate(entries, folder, Path(out_dir), folder.name, axis)


def load_jobs(source: str | Path, out_dir: str | Path, *, axis: str = "axial",
              prompt_encoder: bool = False) -> list[VolumeJob]:
    """A manifest file or a folder of volumes with prompts files, validated (see :func:`load_manifest`)."""
    path = Path(source).expanduser()
    if path.is_dir() and not path.name.lower().endswith(".zarr"):
        return load_folder(path, out_dir, axis=axis)
    return load_manifest(path, out_dir, axis=axis, prompt_encoder=prompt_encoder)
