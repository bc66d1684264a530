"""3D volumes: NIfTI (.nii/.nii.gz), MHA/MHD/NRRD, DICOM series (directory or .zip) -> :class:`Volume`.

Axis and geometry convention (one for all of radzoo):

* ``Volume.array`` is float32 in **(z, y, x)** order, exactly ``sitk.GetArrayFromImage``:
  ``array[k, j, i]`` is the voxel at ITK index ``(i, j, k)``. For CT it holds Hounsfield units
  (Rescale Slope/Intercept applied; NIfTI scl_slope/inter applied); other inputs (masks) keep
  their values.
* ``spacing``, ``origin`` are in ITK **(x, y, z)** order, millimetres; ``direction`` is the 3x3
  ITK direction matrix (column ``d`` = direction of index axis ``d``) in **LPS** patient space
  (NIfTI RAS is converted to LPS by SimpleITK, so an LAS file gets ``diag(1, -1, 1)``).
* ``affine`` (4x4) maps a homogeneous ITK index ``(i, j, k, 1)`` (= ``array[k, j, i]``) to LPS mm:
  ``affine[:3, :3] = direction @ diag(spacing)``, ``affine[:3, 3] = origin``.

DICOM series rules (reported in ``metadata["series_report"]`` and ``metadata["choice"]``):

1. Every file under the directory is sniffed by content (names/extensions are ignored) and its
   header parsed; files that are not DICOM are listed as skipped.
2. Files are grouped by SeriesInstanceUID. Within a series a file is excluded when: ImageType
   contains LOCALIZER (scouts/topograms); its Modality differs from ``modality`` (if given); it is
   multi-frame; it lacks Image Position/Orientation or Pixel Spacing; for ``modality="CT"`` it is
   not axial (slice normal more than ~37 degrees from the patient z axis); or its orientation or
   Rows/Columns differ from the series majority.
3. Candidate series have >= 2 usable slices. Unless ``series_uid`` is given, the series with the
   most slices wins, then the thinnest (SliceThickness, else slice spacing), then the smallest UID.
4. Slices are sorted by ImagePositionPatient projected on the slice normal (row x column
   direction cosines); never by file name or InstanceNumber. Slices at duplicate positions
   (< 0.01 mm apart) are dropped (first file in name order kept) and reported.
5. Slice spacing is the median gap between sorted positions. Overlapping slices (thickness >
   spacing) are normal. Uneven gaps (deviation > 1 % of the median, or > 0.01 mm) are reported in
   ``metadata["irregular_spacing"]`` and handled by ``irregular``: ``"resample"`` (default)
   linearly interpolates onto a regular grid at the median spacing; ``"error"`` raises
   :class:`VolumeReadError`; ``"ignore"`` keeps the slices and states the median spacing.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.io import _source
from radzoo.io.read_errors import VolumeReadError

DEFAULT_MAX_VOXELS = 1 << 31  # 2.1 G voxels (8 GiB as float32)
DEFAULT_MAX_ZIP_BYTES = 8 << 30  # uncompressed size limit for zipped series (zip-bomb guard)

_INTERPOLATORS = {
    "bspline": "sitkBSpline",
    "linear": "sitkLinear",
    "nearest": "sitkNearestNeighbor",
    "lanczos": "sitkLanczosWindowedSinc",
}


@dataclass(eq=False)
class Volume:
    """A 3D image: float32 (z, y, x) array plus ITK geometry (see module docstring)."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # (x, y, z) mm
    origin: tuple[float, float, float]  # (x, y, z) LPS mm of voxel index (0, 0, 0)
    direction: np.ndarray  # 3x3, LPS, column d = direction of index axis d (x, y, z)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4x4 map from homogeneous ITK index (i, j, k, 1) = array[k, j, i] to LPS millimetres."""
        out = np.eye(4)
        out[:3, :3] = np.asarray(self.direction, dtype=np.float64) @ np.diag(self.spacing)
        out[:3, 3] = self.origin
        return out

    def index_to_physical(self, zyx: Any) -> np.ndarray:
        """LPS mm of array index/indices given in (z, y, x) numpy order."""
        zyx = np.asarray(zyx, dtype=np.float64)
        ijk = zyx[..., ::-1]
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def to_sitk(self) -> Any:
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array, dtype=np.float32))
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in np.asarray(self.direction, dtype=np.float64).ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: Any, metadata: dict[str, Any] | None = None) -> Volume:
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise VolumeReadError(str((metadata or {}).get("source", "<sitk image>")),
                                  f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise VolumeReadError(str((metadata or {}).get("source", "<sitk image>")),
                                  "vector/colour volumes are not supported")
        array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        return cls(
            array=array,
            spacing=tuple(float(s) for s in image.GetSpacing()),  # type: ignore[arg-type]
            origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
            direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
            metadata=dict(metadata or {}),
        )

    def __repr__(self) -> str:
        return (f"Volume(shape={self.shape}, spacing={tuple(round(s, 4) for s in self.spacing)}, "
                f"source={self.metadata.get('source')!r})")


# ------------------------------------------------------------------------------------ reading


def read_volume(source: Any, *, modality: str | None = "CT", series_uid: str | None = None,
                irregular: str = "resample", max_voxels: int = DEFAULT_MAX_VOXELS,
                max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> Volume:
    """Read a volume from a NIfTI/MHA/NRRD file, a DICOM series directory, or a .zip of one.

    ``modality`` filters DICOM series (``None`` accepts any); ``series_uid`` picks one series;
    ``irregular`` is ``"resample"`` | ``"error"`` | ``"ignore"`` (uneven slice gaps). Any failure
    raises :class:`VolumeReadError` naming the source and the cause.
    """
    label = _source.source_label(source)
    if irregular not in ("resample", "error", "ignore"):
        raise VolumeReadError(label, f"irregular must be 'resample', 'error' or 'ignore', got {irregular!r}")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)) or (
                not isinstance(source, (str, os.PathLike)) and hasattr(source, "read")):
            data, label = _source.load_bytes(source, VolumeReadError)
            with tempfile.TemporaryDirectory(prefix="radzoo_vol_") as tmp:
                path = Path(tmp) / ("volume" + _suffix_for(data))
                path.write_bytes(data)
                vol = _read_path(path, label, modality, series_uid, irregular, max_voxels, max_zip_bytes)
            return vol
        path = Path(source)
        if not path.exists():
            raise VolumeReadError(label, "path not found")
        return _read_path(path, label, modality, series_uid, irregular, max_voxels, max_zip_bytes)
    except VolumeReadError:
        raise
    except MemoryError as exc:
        raise VolumeReadError(label, "out of memory while reading the volume") from exc
    except Exception as exc:  # noqa: BLE001 - only VolumeReadError leaves read_volume
        raise VolumeReadError(label, f"unexpected {type(exc).__name__}: {exc}") from exc


def _suffix_for(data: bytes) -> str:
    if data.startswith(b"PK\x03\x04"):
        return ".zip"
    if data.startswith(b"\x1f\x8b"):
        return ".nii.gz"
    if data.startswith(b"NRRD"):
        return ".nrrd"
    if len(data) > 348 and data[344:348] in (b"n+1\x00", b"ni1\x00"):
        return ".nii"
    if data[:64].lstrip().startswith((b"ObjectType", b"NDims")):
        return ".mha"
    return ".dcm"


def _read_path(path: Path, label: str, modality: str | None, series_uid: str | None, irregular: str,
               max_voxels: int, max_zip_bytes: int) -> Volume:
    if path.is_dir():
        return _read_dicom_dir(path, label, modality, series_uid, irregular, max_voxels)
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04"):
        with tempfile.TemporaryDirectory(prefix="radzoo_zip_") as tmp:
            _extract_zip(path, Path(tmp), label, max_zip_bytes)
            vol = _read_dicom_dir(Path(tmp), label, modality, series_uid, irregular, max_voxels)
        vol.metadata["format"] = "dicom_series_zip"
        return vol
    if head.startswith(b"\x1f\x8b") or (len(head) > 348 and head[344:348] in (b"n+1\x00", b"ni1\x00")):
        return _read_sitk_file(path, label, "NiftiImageIO", ".nii.gz" if head.startswith(b"\x1f\x8b") else ".nii",
                               "nifti", max_voxels)
    if head.startswith(b"NRRD"):
        return _read_sitk_file(path, label, "NrrdImageIO", ".nrrd", "nrrd", max_voxels)
    if head.lstrip().startswith((b"ObjectType", b"NDims")):
        return _read_sitk_file(path, label, "MetaImageIO", path.suffix or ".mha", "metaimage", max_voxels)
    if _source.dicom_offsets(head + b"\x00" * 8):
        raise VolumeReadError(label, "a single DICOM file is not a volume: pass the series directory (or a .zip of it)")
    raise VolumeReadError(label, "not a NIfTI, MHA/NRRD file, DICOM series directory or .zip of one")


def _extract_zip(path: Path, dest: Path, label: str, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise VolumeReadError(label, f"zip expands to {total} bytes, over max_zip_bytes={max_bytes}")
            for i, member in enumerate(members):
                base = Path(member.filename).name
                if not base or base.startswith(".") or base.upper() == "DICOMDIR":
                    continue
                # flat, index-prefixed names: no path traversal, no collisions; content decides the rest
                with zf.open(member) as src, open(dest / f"{i:07d}_{base[:100]}", "wb") as dst:
                    dst.write(src.read())
    except VolumeReadError:
        raise
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise VolumeReadError(label, f"cannot extract the zip ({type(exc).__name__}: {exc})") from exc


def _read_sitk_file(path: Path, label: str, io_name: str, suffix: str, fmt: str, max_voxels: int) -> Volume:
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory(prefix="radzoo_sitk_") as tmp:
        target = path
        if not str(path).lower().endswith(suffix.lower()):  # ITK readers check the extension
            target = Path(tmp) / ("volume" + suffix)
            try:
                target.symlink_to(path.resolve())
            except OSError:
                target.write_bytes(path.read_bytes())
        reader = sitk.ImageFileReader()
        reader.SetImageIO(io_name)
        reader.SetFileName(str(target))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise VolumeReadError(label, f"cannot read {fmt} header ({_first_line(exc)})") from exc
        size = reader.GetSize()
        if len(size) != 3 and not (len(size) == 4 and size[3] == 1):
            raise VolumeReadError(label, f"expected a 3D volume, got size {size}")
        n = int(np.prod(size))
        if n == 0:
            raise VolumeReadError(label, f"zero-size volume {size}")
        if n > max_voxels:
            raise VolumeReadError(label, f"volume of {n} voxels exceeds max_voxels={max_voxels}")
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise VolumeReadError(label, f"cannot read {fmt} data (truncated or corrupt?) ({_first_line(exc)})") from exc
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeReadError(label, "vector/colour volumes are not supported")
    vol = Volume.from_sitk(image, {"source": label, "format": fmt})
    vol.metadata["n_slices"] = vol.shape[0]
    return vol


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "ERROR" in ln.upper() or "exception" in ln.lower()]
    return (useful or lines or [type(exc).__name__])[-1][:300]


# ------------------------------------------------------------------------------- DICOM series


@dataclass
class _Slice:
    path: Path
    series_uid: str
    modality: str | None
    image_type: tuple[str, ...]
    iop: np.ndarray | None
    ipp: np.ndarray | None
    rows: int
    cols: int
    frames: int
    pixel_spacing: tuple[float, float] | None
    thickness: float | None
    description: str | None
    reason: str | None = None
    position: float = 0.0


def _header(path: Path) -> _Slice | None:
    from radzoo.io import dicom

    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
        offsets = _source.dicom_offsets(head)
        if not offsets:
            return None
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dicom.parse(data, str(path), offsets, stop_before_pixels=True)

        def floats(value: Any, n: int) -> np.ndarray | None:
            try:
                arr = np.array([float(v) for v in value], dtype=np.float64)
            except (TypeError, ValueError):
                return None
            return arr if arr.size == n and np.all(np.isfinite(arr)) else None

        image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or ()))
        frames = dicom._int_or(ds.get("NumberOfFrames"), 1)  # noqa: SLF001
        return _Slice(
            path=path,
            series_uid=str(ds.get("SeriesInstanceUID") or
                           f"<no SeriesInstanceUID; SeriesNumber {ds.get('SeriesNumber', '?')}>"),
            modality=dicom._str(ds.get("Modality")),  # noqa: SLF001
            image_type=image_type,
            iop=floats(ds.get("ImageOrientationPatient") or (), 6),
            ipp=floats(ds.get("ImagePositionPatient") or (), 3),
            rows=dicom._int_or(ds.get("Rows"), 0),  # noqa: SLF001
            cols=dicom._int_or(ds.get("Columns"), 0),  # noqa: SLF001
            frames=frames,
            pixel_spacing=dicom.pixel_spacing(ds),
            thickness=dicom._float(ds.get("SliceThickness")),  # noqa: SLF001
            description=dicom._str(ds.get("SeriesDescription")),  # noqa: SLF001
        )
    except Exception:  # noqa: BLE001 - unreadable files are reported as skipped
        return None


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _read_dicom_dir(root: Path, label: str, modality: str | None, series_uid: str | None, irregular: str,
                    max_voxels: int) -> Volume:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise VolumeReadError(label, "the directory is empty (no files)")
    slices: list[_Slice] = []
    skipped: list[str] = []
    for path in files:
        hdr = _header(path)
        if hdr is None:
            skipped.append(path.name)
        else:
            slices.append(hdr)
    if not slices:
        raise VolumeReadError(label, f"no DICOM files found among {len(files)} file(s)")

    want = modality.upper() if modality else None
    for s in slices:
        if any("LOCALIZER" in t or "SCOUT" in t or "TOPOGRAM" in t for t in s.image_type):
            s.reason = "localizer"
        elif want and (s.modality or "").upper() != want:
            s.reason = f"modality {s.modality}"
        elif s.frames > 1:
            s.reason = "multi-frame"
        elif s.iop is None or s.ipp is None or s.pixel_spacing is None or s.rows <= 0 or s.cols <= 0:
            s.reason = "no geometry (ImagePositionPatient/ImageOrientationPatient/PixelSpacing/Rows/Columns)"
        elif want == "CT" and abs(_normal(s.iop)[2]) < 0.8:
            s.reason = "not axial"

    by_series: dict[str, list[_Slice]] = {}
    for s in slices:
        by_series.setdefault(s.series_uid, []).append(s)

    report: list[dict[str, Any]] = []
    candidates: list[tuple[str, list[_Slice]]] = []
    for uid, members in sorted(by_series.items()):
        usable = [s for s in members if s.reason is None]
        if usable:
            key = Counter((tuple(np.round(s.iop, 3)), s.rows, s.cols) for s in usable).most_common(1)[0][0]
            for s in usable:
                if (tuple(np.round(s.iop, 3)), s.rows, s.cols) != key:
                    s.reason = "orientation/size differs from the series majority"
            usable = [s for s in usable if s.reason is None]
        reasons = Counter(s.reason for s in members if s.reason is not None)
        report.append({
            "series_uid": uid,
            "description": members[0].description,
            "modality": members[0].modality,
            "n_files": len(members),
            "n_usable": len(usable),
            "excluded": dict(reasons),
        })
        if len(usable) >= 2:
            candidates.append((uid, usable))

    if series_uid is not None:
        chosen = [c for c in candidates if c[0] == series_uid]
        if not chosen:
            known = {r["series_uid"]: r for r in report}
            why = ("not found" if series_uid not in known else
                   f"has {known[series_uid]['n_usable']} usable slice(s); excluded {known[series_uid]['excluded']}")
            raise VolumeReadError(label, f"series {series_uid} {why}")
        uid, usable = chosen[0]
        choice = f"series {uid} requested explicitly"
    else:
        if not candidates:
            raise VolumeReadError(label, _no_series_message(report, want, skipped))

        def thinnest(members: list[_Slice]) -> float:
            th = [s.thickness for s in members if s.thickness]
            if th:
                return float(np.median(th))
            n = _normal(members[0].iop)  # type: ignore[arg-type]
            pos = np.sort([float(s.ipp @ n) for s in members])  # type: ignore[operator]
            return float(np.median(np.diff(pos))) if len(pos) > 1 else float("inf")

        candidates.sort(key=lambda c: (-len(c[1]), thinnest(c[1]), c[0]))
        uid, usable = candidates[0]
        choice = (f"series {uid} chosen among {len(candidates)} candidate(s): most slices, then thinnest"
                  if len(candidates) > 1 else f"series {uid}: the only candidate")

    normal = _normal(usable[0].iop)  # type: ignore[arg-type]
    for s in usable:
        s.position = float(s.ipp @ normal)  # type: ignore[operator]
    usable.sort(key=lambda s: (s.position, s.path.name))
    kept: list[_Slice] = [usable[0]]
    dropped: list[str] = []
    for s in usable[1:]:
        if abs(s.position - kept[-1].position) < 0.01:
            dropped.append(s.path.name)
        else:
            kept.append(s)
    if len(kept) < 2:
        raise VolumeReadError(label, f"series {uid} has a single distinct slice position: not a volume")
    positions = np.array([s.position for s in kept])
    gaps = np.diff(positions)
    dz = float(np.median(gaps))
    deviation = float(np.max(np.abs(gaps - dz)))
    is_irregular = deviation > max(0.01 * dz, 0.01)
    if is_irregular and irregular == "error":
        raise VolumeReadError(label, f"series {uid} has uneven slice spacing (gaps {np.round(gaps, 3).tolist()} mm, "
                              f"median {dz:.4g} mm); pass irregular='resample' to interpolate onto a regular grid")
    rows, cols = kept[0].rows, kept[0].cols
    if rows * cols * len(kept) > max_voxels:
        raise VolumeReadError(label, f"{rows}x{cols}x{len(kept)} voxels exceed max_voxels={max_voxels}")

    array = np.empty((len(kept), rows, cols), dtype=np.float32)
    engines: Counter[str] = Counter()
    for k, s in enumerate(kept):
        plane, engine = _read_slice(s.path, label, rows, cols)
        array[k] = plane
        engines[engine] += 1

    if is_irregular and irregular == "resample":
        array, n_new = _regularise(array, positions, dz)
        handled = f"resampled linearly onto {n_new} slices at {dz:.4g} mm"
    elif is_irregular:
        handled = "kept as is (irregular='ignore'); spacing is the median gap"
    else:
        handled = "regular"

    iop = kept[0].iop
    direction = np.stack([iop[:3], iop[3:], normal], axis=1)  # type: ignore[index]
    ps = kept[0].pixel_spacing
    spacing = (float(ps[1]), float(ps[0]), dz)  # type: ignore[index]
    meta = {
        "source": label,
        "format": "dicom_series",
        "series_uid": uid,
        "modality": kept[0].modality,
        "description": kept[0].description,
        "n_slices": int(array.shape[0]),
        "n_files_read": len(kept),
        "slice_positions": positions.tolist(),
        "slice_thickness": kept[0].thickness,
        "files": [s.path.name for s in kept],
        "duplicates_dropped": dropped,
        "irregular_spacing": bool(is_irregular),
        "spacing_deviation_mm": deviation,
        "spacing_handling": handled,
        "choice": choice,
        "series_report": report,
        "skipped_files": skipped,
        "decoder": dict(engines),
    }
    return Volume(array=array, spacing=spacing, origin=tuple(float(v) for v in kept[0].ipp),  # type: ignore[arg-type]
                  direction=direction, metadata=meta)


def _no_series_message(report: list[dict[str, Any]], want: str | None, skipped: list[str]) -> str:
    reasons: Counter[str] = Counter()
    for r in report:
        reasons.update(r["excluded"])
    single = [r for r in report if r["n_usable"] == 1]
    found = ", ".join(f"{r['series_uid']} ({r['modality']}, {r['n_files']} file(s), usable {r['n_usable']}, "
                      f"excluded {r['excluded']})" for r in report)
    if reasons and set(reasons) == {"localizer"}:
        head = "only localizer/scout images found, no axial series"
    elif single and not any(r["n_usable"] >= 2 for r in report):
        head = "only a single usable slice: a volume needs at least 2 slices"
    elif want and all(any(k.startswith("modality") for k in r["excluded"]) for r in report):
        head = f"no {want} series found"
    else:
        head = f"no usable {want or ''} series with at least 2 slices".replace("  ", " ")
    return f"{head}; series found: {found}" + (f"; {len(skipped)} non-DICOM file(s) skipped" if skipped else "")


def _read_slice(path: Path, label: str, rows: int, cols: int) -> tuple[np.ndarray, str]:
    """One slice in modality units (HU): SimpleITK/GDCM first, radzoo's pydicom pipeline as fallback."""
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(str(path))
        image = reader.Execute()
        arr = sitk.GetArrayFromImage(image)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.shape == (rows, cols):
            return arr.astype(np.float32, copy=False), "simpleitk-gdcm"
    except RuntimeError:
        pass
    from radzoo.io.image import read_dicom_values
    from radzoo.io.read_errors import ImageReadError

    try:
        arr = read_dicom_values(path)
    except ImageReadError as exc:
        raise VolumeReadError(label, f"slice {path.name}: {exc.cause}") from exc
    if arr.shape != (rows, cols):
        raise VolumeReadError(label, f"slice {path.name} decodes to {arr.shape}, expected {(rows, cols)}")
    return arr, "pydicom"


def _regularise(array: np.ndarray, positions: np.ndarray, dz: float) -> tuple[np.ndarray, int]:
    n_new = int(np.floor((positions[-1] - positions[0]) / dz + 1e-6)) + 1
    targets = positions[0] + dz * np.arange(n_new)
    j = np.clip(np.searchsorted(positions, targets, side="right") - 1, 0, len(positions) - 2)
    w = ((targets - positions[j]) / (positions[j + 1] - positions[j])).astype(np.float32)
    w = np.clip(w, 0.0, 1.0)[:, None, None]
    out = (1.0 - w) * array[j] + w * array[j + 1]
    return out.astype(np.float32), n_new


# ---------------------------------------------------------------------------------- resampling


def resample(volume: Volume, spacing: Any = (1.0, 1.0, 1.0), interpolator: str = "bspline",
             default_value: float = -1024.0, size: tuple[int, int, int] | None = None) -> Volume:
    """Resample onto a grid with ``spacing`` (x, y, z mm), same origin and direction.

    ``size`` (x, y, z voxels) defaults to keeping the centre-to-centre extent, ``int((n-1)*s/t) + 1``
    per axis; methods with their own grid rule pass it (graph-CT: ``radzoo.ct.isotropic_grid``).
    Points outside the input get ``default_value`` (-1024: air in HU). The interpolator is
    ``"bspline"`` (cubic, sitkBSpline), ``"linear"``, ``"nearest"`` or ``"lanczos"``.
    """
    import SimpleITK as sitk

    if np.isscalar(spacing):
        spacing = (float(spacing),) * 3
    target = tuple(float(s) for s in spacing)
    if len(target) != 3 or any(not np.isfinite(s) or s <= 0 for s in target):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z), got {spacing!r}")
    if interpolator not in _INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {sorted(_INTERPOLATORS)}, got {interpolator!r}")
    nz, ny, nx = volume.shape
    if size is None:
        size = tuple(int((n - 1) * s / t + 1e-9) + 1 for n, s, t in zip((nx, ny, nz), volume.spacing, target, strict=True))
    elif len(size) != 3 or any(int(v) < 1 for v in size):
        raise ValueError(f"size must be 3 positive voxel counts (x, y, z), got {size!r}")
    size = tuple(max(int(v), 1) for v in size)
    f = sitk.ResampleImageFilter()
    f.SetTransform(sitk.Transform())
    f.SetInterpolator(getattr(sitk, _INTERPOLATORS[interpolator]))
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputSpacing(target)
    f.SetOutputOrigin(tuple(float(o) for o in volume.origin))
    f.SetOutputDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    f.SetSize(size)
    f.SetOutputPixelType(sitk.sitkFloat32)
    out = Volume.from_sitk(f.Execute(volume.to_sitk()), dict(volume.metadata))
    out.metadata["resampled"] = {"from_spacing": tuple(volume.spacing), "from_shape": volume.shape,
                                 "interpolator": interpolator, "default_value": float(default_value),
                                 "size": size}
    out.metadata["n_slices"] = out.shape[0]
    return out
