"""Where a volume's voxels sit in the scanner: one ``Geometry`` for NIfTI, DICOM, NRRD and npz.

Convention (used everywhere in this package)
--------------------------------------------
``Geometry.affine`` is a 4x4 matrix mapping a voxel index in **our array order**
``(z, y, x)`` (the order of ``FrameStack`` and napari layers: slice, row, column)
to **RAS+ world coordinates in mm** (x to the patient's Right, y to Anterior,
z to Superior), the world of NIfTI and nibabel::

    ras = geometry.affine @ [z, y, x, 1]

DICOM and ITK (npz, NRRD) use LPS+; they are converted on read and write
(``LPS = diag(-1, -1, 1) @ RAS``). napari shows volumes in the world order
``(S, P, L)`` (:func:`napari_world`), which puts axial slices on the first axis,
anterior at the top and the patient's left on the right of the screen, the way
radiologists read CT and MR.

Only orthogonal axes are supported (rotations, flips, anisotropic spacing and
any origin are fine); sheared volumes (e.g. tilted-gantry CT) are refused with a
one-line message rather than shown in the wrong place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

#: LPS <-> RAS: flip the first two world axes.
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: RAS (x, y, z) -> napari world (S, P, L).
NAPARI_FROM_RAS = np.array(
    [[0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
#: Our voxel order (z, y, x) <-> NIfTI/ITK voxel order (i, j, k) = (x, y, z): reverse the axes.
_REVERSE = np.array(
    [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
#: Largest |cos| between two voxel axes still called orthogonal (NIfTI stores float32).
ORTHO_TOL = 1e-3


def check_affine(affine: Any, what: str = "affine") -> np.ndarray:
    """Return ``affine`` as a float64 4x4 array, or raise ``ValueError`` saying what is wrong.

    Parameters
    ----------
    affine : array-like
        4x4 voxel -> world matrix.
    what : str
        Name used in the message (e.g. the file name).
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"{what}: affine must be 4x4, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{what}: affine holds NaN or infinite values")
    if not np.allclose(matrix[3], [0, 0, 0, 1]):
        raise ValueError(f"{what}: affine's last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    columns = matrix[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms <= 0):
        raise ValueError(f"{what}: affine has a zero voxel size (degenerate axis)")
    unit = columns / norms
    cos = unit.T @ unit - np.eye(3)
    worst = float(np.max(np.abs(cos)))
    if worst > ORTHO_TOL:
        angle = float(np.degrees(np.arccos(np.clip(1.0 - worst, -1.0, 1.0))))
        raise ValueError(
            f"{what}: voxel axes are not orthogonal (sheared by {90.0 - angle:.2f}°, "
            "e.g. tilted-gantry CT); resample to an orthogonal grid first"
        )
    return matrix


def _ras_from_lps(lps_affine: np.ndarray) -> np.ndarray:
    return LPS_FROM_RAS @ lps_affine  # diag(-1,-1,1) is its own inverse


@dataclass(frozen=True, eq=False)
class Geometry:
    """A volume's shape and placement in the scanner.

    Attributes
    ----------
    affine : ndarray
        4x4, voxel index ``(z, y, x)`` -> RAS+ mm (see the module docstring).
    shape : tuple of int
        Volume shape ``(Z, Y, X)`` the affine belongs to.
    source : str
        Where it came from: ``"nifti"``, ``"dicom"``, ``"npz"``, ``"nrrd"`` or ``"napari"``.
    qform_code, sform_code : int
        NIfTI header codes (1 = scanner) to write back.
    nifti_header : bytes, optional
        The source NIfTI header block, so labels get its exact qform/sform fields.
    frame_of_reference_uid, series_instance_uid : str, optional
        DICOM identifiers of the source series.
    source_files : tuple of str
        DICOM files in volume (z) order; a DICOM-SEG references them.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    source: str = "napari"
    qform_code: int = 1
    sform_code: int = 1
    nifti_header: bytes | None = field(default=None, repr=False)
    frame_of_reference_uid: str | None = None
    series_instance_uid: str | None = None
    source_files: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "affine", check_affine(self.affine, self.source))
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"geometry shape must be 3 positive sizes (Z, Y, X), got {shape}")
        object.__setattr__(self, "shape", shape)

    # -- derived -------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(z, y, x)`` in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS position (mm) of voxel ``(0, 0, 0)``."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def nifti_affine(self) -> np.ndarray:
        """The same placement for NIfTI's ``(i, j, k) = (x, y, z)`` voxel order (RAS)."""
        return self.affine @ _REVERSE

    @property
    def napari_affine(self) -> np.ndarray:
        """Voxel ``(z, y, x)`` -> napari world ``(S, P, L)`` mm (see :func:`napari_world`)."""
        return NAPARI_FROM_RAS @ self.affine

    def napari_layer_kwargs(self) -> dict[str, Any]:
        """``scale`` (voxel size) and ``affine`` (rotation + origin) for a napari layer."""
        spacing = np.asarray(self.spacing)
        rigid = self.napari_affine.copy()
        rigid[:3, :3] = rigid[:3, :3] / spacing  # napari applies scale first, then affine
        return {"scale": tuple(spacing.tolist()), "affine": rigid}

    def voxel_to_ras(self, zyx: Sequence[float]) -> np.ndarray:
        """RAS mm of a voxel index (or an ``(n, 3)`` array of them)."""
        points = np.atleast_2d(np.asarray(zyx, dtype=np.float64))
        out = points @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out[0] if np.ndim(zyx) == 1 else out

    def ras_to_voxel(self, ras: Sequence[float]) -> np.ndarray:
        """Fractional voxel index ``(z, y, x)`` of RAS mm point(s)."""
        inverse = np.linalg.inv(self.affine)
        points = np.atleast_2d(np.asarray(ras, dtype=np.float64))
        out = points @ inverse[:3, :3].T + inverse[:3, 3]
        return out[0] if np.ndim(ras) == 1 else out

    def check_labels(self, shape: Sequence[int], what: str = "labels") -> None:
        """Raise ``ValueError`` unless ``shape`` is this volume's ``(Z, Y, X)``."""
        shape = tuple(int(s) for s in shape)
        if shape != self.shape:
            raise ValueError(
                f"{what} shape {shape} does not match the image {self.shape} they are saved against"
            )

    def same_space(self, other: "Geometry", atol: float = 1e-4) -> bool:
        """Whether both describe the same voxel grid (shape and affine)."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)

    def with_shape(self, shape: Sequence[int]) -> "Geometry":
        """A copy for another shape (same affine), e.g. a single-slice label."""
        return replace(self, shape=tuple(shape))

    def describe(self) -> str:
        """One line for logs and layer tooltips."""
        z, y, x = self.spacing
        ox, oy, oz = self.origin
        return (f"{self.source} {self.shape} spacing (z,y,x)=({z:.3g}, {y:.3g}, {x:.3g}) mm, "
                f"origin RAS=({ox:.1f}, {oy:.1f}, {oz:.1f}) mm, axes {''.join(axis_codes(self))}")


def napari_world(ras: Sequence[float]) -> np.ndarray:
    """napari world coordinates ``(S, P, L)`` of RAS mm point(s)."""
    points = np.atleast_2d(np.asarray(ras, dtype=np.float64))
    out = points @ NAPARI_FROM_RAS[:3, :3].T
    return out[0] if np.ndim(ras) == 1 else out


def axis_codes(geometry: Geometry) -> tuple[str, str, str]:
    """Anatomical direction each voxel axis ``(z, y, x)`` points to, e.g. ``("S", "P", "L")``."""
    import nibabel.orientations as orient

    codes = orient.aff2axcodes(geometry.affine)
    return tuple(str(c) for c in codes)


# -- constructors ----------------------------------------------------------------
def from_spacing(shape: Sequence[int], spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 origin_lps: Sequence[float] = (0.0, 0.0, 0.0), source: str = "napari") -> Geometry:
    """Axis-aligned geometry: ``z`` to Superior, ``y`` to Posterior, ``x`` to Left (DICOM axial).

    This is what a plain ``(Z, Y, X)`` stack with a voxel size means in napari's
    ``(S, P, L)`` world (see :func:`from_napari`).
    """
    sz, sy, sx = (float(s) for s in spacing)
    lps = np.eye(4)
    lps[:3, :3] = np.array([[0.0, 0.0, sx], [0.0, sy, 0.0], [sz, 0.0, 0.0]])
    lps[:3, 3] = [float(v) for v in origin_lps]
    return Geometry(_ras_from_lps(lps), tuple(shape), source=source)


def from_napari(data2world: Any, shape: Sequence[int], source: str = "napari") -> Geometry:
    """Geometry of a napari layer from its full data -> world matrix (world ``(S, P, L)``)."""
    matrix = np.asarray(data2world, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"need a 3D layer transform (4x4), got {matrix.shape}")
    return Geometry(np.linalg.inv(NAPARI_FROM_RAS) @ matrix, tuple(shape), source=source)


def from_nifti(image: Any, shape_zyx: Sequence[int], name: str = "nifti") -> Geometry:
    """Geometry of a nibabel NIfTI image read as ``(Z, Y, X)``; keeps the header codes."""
    header = image.header
    affine = check_affine(image.affine, name) @ _REVERSE
    qcode = int(header["qform_code"]) if "qform_code" in header else 0
    scode = int(header["sform_code"]) if "sform_code" in header else 0
    block = header.binaryblock if hasattr(header, "binaryblock") else None
    return Geometry(affine, tuple(shape_zyx), source="nifti", qform_code=qcode, sform_code=scode,
                    nifti_header=block)


def from_itk(spacing_xyz: Sequence[float], direction: Sequence[float], origin_xyz: Sequence[float],
             shape_zyx: Sequence[int], source: str = "npz") -> Geometry:
    """Geometry from ITK/SimpleITK-style metadata (LPS, ``(x, y, z)`` order, row-major direction).

    This is what MedSAM2's ``.npz`` files store next to ``imgs`` of shape ``(Z, Y, X)``:
    ``spacing`` (3,), ``direction`` (9,) and ``origin`` (3,).
    """
    spacing = np.asarray(spacing_xyz, dtype=np.float64).reshape(-1)
    direction = np.asarray(direction, dtype=np.float64).reshape(-1)
    origin = np.asarray(origin_xyz, dtype=np.float64).reshape(-1)
    if spacing.size != 3 or direction.size != 9 or origin.size != 3:
        raise ValueError(
            f"{source}: need spacing (3,), direction (9,) and origin (3,), got "
            f"{spacing.size}, {direction.size} and {origin.size} values"
        )
    if np.any(spacing <= 0):
        raise ValueError(f"{source}: spacing must be positive, got {spacing.tolist()}")
    lps_xyz = np.eye(4)
    lps_xyz[:3, :3] = direction.reshape(3, 3) @ np.diag(spacing)
    lps_xyz[:3, 3] = origin
    return Geometry(_ras_from_lps(lps_xyz) @ _REVERSE, tuple(shape_zyx), source=source)


def to_itk(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spacing_xyz, direction (3, 3), origin_xyz)`` in LPS, the inverse of :func:`from_itk`."""
    lps_xyz = LPS_FROM_RAS @ geometry.nifti_affine
    spacing = np.linalg.norm(lps_xyz[:3, :3], axis=0)
    return spacing, lps_xyz[:3, :3] / spacing, lps_xyz[:3, 3].copy()


def from_dicom_planes(positions: Sequence[Sequence[float]], orientation: Sequence[float],
                      pixel_spacing: Sequence[float], shape_zyx: Sequence[int], **ids: Any) -> Geometry:
    """Geometry of a sorted DICOM series.

    Parameters
    ----------
    positions : sequence of (3,)
        ImagePositionPatient of every slice, in volume order.
    orientation : (6,)
        ImageOrientationPatient: row direction (along x), then column direction (along y).
    pixel_spacing : (2,)
        PixelSpacing: ``(row spacing = y, column spacing = x)``.
    shape_zyx : tuple of int
        Volume shape.
    **ids
        ``frame_of_reference_uid``, ``series_instance_uid``, ``source_files``.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    cosines = np.asarray(orientation, dtype=np.float64).reshape(2, 3)
    row_dir, col_dir = cosines
    dy, dx = (float(v) for v in pixel_spacing)
    if len(positions) > 1:
        steps = np.diff(positions, axis=0)
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
        gaps = np.linalg.norm(steps, axis=1)
        if np.any(gaps < 1e-6):
            raise ValueError("DICOM series has two slices at the same position (duplicate or mixed series)")
        if np.max(np.abs(gaps - np.linalg.norm(step))) > max(1e-3, 0.01 * np.linalg.norm(step)):
            raise ValueError(
                f"DICOM slices are unevenly spaced (gaps {gaps.min():.3g} to {gaps.max():.3g} mm): "
                "a slice is missing or the series is mixed"
            )
    else:
        step = np.cross(row_dir, col_dir)  # single slice: unit thickness along the normal
    lps = np.eye(4)
    lps[:3, 0] = step
    lps[:3, 1] = col_dir * dy
    lps[:3, 2] = row_dir * dx
    lps[:3, 3] = positions[0]
    return Geometry(_ras_from_lps(lps), tuple(shape_zyx), source="dicom", **ids)
