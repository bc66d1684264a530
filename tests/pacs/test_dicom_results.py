"""radzoo.dicom_out on real DICOM files: TID 1500 SRs and Parametric Maps read back with highdicom
and pydicom, validated by dciodvfy, privacy of the copied header, and the refusals."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import radzoo
from radzoo.dicom_out import (
    grounding_pmap,
    parametric_map,
    provenance_of,
    write_dicom,
    zero_shot_sr,
)
from radzoo.errors import InputError
from radzoo.extract.state import identity_of

CR = "cr_chest_pa_siim_jpegbaseline.dcm"  # CR: no Frame of Reference, PixelSpacing 0.168
DX = "dx_thorax_lateral_canine_mono1.dcm"  # DX: no Frame of Reference, Image Laterality L, body part THORAX
CT = "ct_chest_CT1_JLSN.dcm"  # CT: Frame of Reference, position and orientation
RG1 = "cr_chest_RG1_J2KI.dcm"  # CR with PixelSpacing 0\0


@pytest.fixture(scope="module")
def prior(prior_dir: Path):
    return radzoo.load(prior_dir, device="cpu")


def _groups(sr_ds) -> list:
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_ds)
    return sr.content.get_image_measurement_groups()


def content_items(items) -> list[tuple[str, object]]:
    """(concept name meaning, value) of every SR content item, depth first."""
    out = []
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        kind = item.ValueType
        if kind == "TEXT":
            out.append((name, str(item.TextValue)))
        elif kind == "UIDREF":
            out.append((name, str(item.UID)))
        elif kind == "CODE":
            c = item.ConceptCodeSequence[0]
            out.append((name, (c.CodingSchemeDesignator, c.CodeValue)))
        elif kind == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            out.append((name, (str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID))))
        elif kind == "NUM":
            out.append((name, float(item.MeasuredValueSequence[0].NumericValue)))
        out += content_items(item.get("ContentSequence", []))
    return out


def test_zero_shot_sr_is_tid1500_with_one_finding_per_label(prior, shared_data: Path, tmp_path: Path, dciodvfy) -> None:
    src = shared_data / "dicom" / CR
    result = prior.zero_shot([src])
    path = write_dicom(zero_shot_sr(result, src, prior), tmp_path)
    dciodvfy(path)
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(src, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        assert ds.get(kw) == source.get(kw), kw
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    groups = _groups(ds)
    assert len(groups) == len(result.labels)
    revision = identity_of(prior, None).revision  # what every Parquet row of this model says
    for group, label, p in zip(groups, result.labels, result.probabilities[0], strict=True):
        assert group.finding_type is not None
        (m,) = group.get_measurements()
        assert m.name.value == "122157" and m.name.scheme_designator == "DCM"  # Probability
        assert m.unit.value == "1" and m.unit.scheme_designator == "UCUM"
        assert m.value == pytest.approx(p, abs=1e-9)
        tree = content_items(group)
        assert ("Tracking Identifier", label) in tree
        assert ("Algorithm Name", prior.name) in tree and ("Algorithm Version", revision) in tree
        params = [v for k, v in tree if k == "Algorithm Parameters"]
        assert "prompt_set=prior-chexpert5@1" in params and "random_weights=true" in params
        assert any(p.startswith("radzoo_version=") for p in params)
        assert (source.SOPClassUID, source.SOPInstanceUID) in [v for k, v in tree if k.startswith("Source")], tree
    # the finding codes: SCT where DICOM has a concept, radzoo's local scheme otherwise
    findings = {g.finding_type.meaning: (g.finding_type.scheme_designator, g.finding_type.value) for g in groups}
    assert findings["Pleural effusion"] == ("SCT", "60046008")
    assert findings["Cardiomegaly"] == ("SCT", "287272002")
    assert findings["Atelectasis"][0] == "99RADZOO"
    observer = content_items(ds.ContentSequence)
    assert ("Observer Type", ("DCM", "121007")) in observer  # the device (the algorithm) observed
    assert ("Procedure reported", ("SCT", "363679005")) in observer
    assert "99RADZOO" in [item.CodingSchemeDesignator for item in ds.CodingSchemeIdentificationSequence]


def test_outputs_copy_only_required_patient_and_study_attributes(prior, shared_data: Path, tmp_path: Path, dciodvfy) -> None:
    src = pydicom.dcmread(shared_data / "dicom" / DX)
    # identifying attributes a real header may carry beyond what the IODs require
    src.PatientAge = "007Y"
    src.PatientWeight = "31"
    src.AdditionalPatientHistory = "history that must not travel"
    src.OtherPatientIDs = "OTHER-ID-42"
    src.InstitutionName = "Some Hospital"
    src.StationName = "XRAY-ROOM-3"
    src.StudyDescription = "THORAX DOG"
    result = prior.zero_shot([src.filename])
    heat = prior.ground(src.filename, "Pleural Effusion is observed")
    for ds in (zero_shot_sr(result, src, prior), grounding_pmap(heat, src, prior)):
        path = write_dicom(ds, tmp_path)
        dciodvfy(path)
        text = path.read_bytes()
        for secret in (b"must not travel", b"OTHER-ID-42", b"Some Hospital", b"XRAY-ROOM-3", b"THORAX DOG", b"007Y"):
            assert secret not in text, secret
        back = pydicom.dcmread(path)
        for kw in ("PatientAge", "PatientWeight", "AdditionalPatientHistory", "OtherPatientIDs", "InstitutionName",
                   "StationName", "StudyDescription"):
            assert kw not in back, kw
        assert back.PatientID == src.PatientID and back.StudyInstanceUID == src.StudyInstanceUID


def test_parametric_map_without_frame_of_reference_defines_its_own(prior, shared_data: Path, tmp_path: Path, dciodvfy) -> None:
    src = shared_data / "dicom" / CR
    result = prior.ground(src, "Pleural Effusion is observed")
    path = write_dicom(grounding_pmap(result, src, prior), tmp_path)
    dciodvfy(path)
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(src, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and ds.BitsAllocated == 32 and "FloatPixelData" in ds
    assert (ds.Rows, ds.Columns) == (source.Rows, source.Columns)
    np.testing.assert_array_equal(ds.pixel_array, result.heatmap.astype(np.float32))
    assert "FrameOfReferenceUID" not in source and ds.FrameOfReferenceUID  # its own frame, said in the comments
    assert "no Frame of Reference" in ds.ImageComments
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [float(v) for v in source.PixelSpacing]
    rwvm = shared.RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    assert rwvm.DoubleFloatRealWorldValueFirstValueMapped == pytest.approx(float(result.heatmap.min()))
    assert rwvm.DoubleFloatRealWorldValueLastValueMapped == pytest.approx(float(result.heatmap.max()))
    ref = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    assert ref.SpatialLocationsPreserved == "YES"
    assert ds.DeviceSerialNumber == identity_of(prior, None).revision and ds.ManufacturerModelName == prior.name
    pm = hd.pm.ParametricMap.from_dataset(ds)
    assert pm.SOPInstanceUID == ds.SOPInstanceUID


def test_parametric_map_keeps_the_source_frame_of_reference(prior, shared_data: Path, tmp_path: Path, dciodvfy) -> None:
    """A source with a patient frame of reference (a real CT slice): the map sits on it."""
    src = shared_data / "dicom" / CT
    source = pydicom.dcmread(src, stop_before_pixels=True)
    heat = np.random.default_rng(0).random((source.Rows, source.Columns)).astype(np.float32)
    pm = parametric_map(heat, src, provenance_of(prior, prompt_set="ground"), text="a finding", method="test")
    path = write_dicom(pm, tmp_path)
    dciodvfy(path)
    ds = pydicom.dcmread(path)
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    plane = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    np.testing.assert_allclose([float(v) for v in plane.ImagePositionPatient], [float(v) for v in source.ImagePositionPatient])
    orient = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in orient], [float(v) for v in source.ImageOrientationPatient])
    assert "ImageComments" not in ds


def test_refusals_are_clear_and_leave_nothing_behind(prior, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rg1 = shared_data / "dicom" / RG1
    with pytest.raises(InputError, match="no usable pixel spacing"):
        grounding_pmap(prior.ground(rg1, "Edema"), rg1, prior, label=RG1)
    png = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[0]
    with pytest.raises(InputError, match="DICOM"):
        zero_shot_sr(prior.zero_shot([png]), png, prior)
    heat = np.zeros((7, 7), np.float32)
    with pytest.raises(InputError, match="does not match"):
        parametric_map(heat, shared_data / "dicom" / CR, provenance_of(prior), text="x", method="test")
    multi = shared_data / "dicom" / "ct_enhanced_multiframe_eCT.dcm"
    with pytest.raises(InputError, match="multi-frame"):
        parametric_map(np.zeros((512, 512), np.float32), multi, provenance_of(prior), text="x", method="test")
    assert not out.exists()
