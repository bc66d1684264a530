"""Small parts without a server: credentials, DICOMweb URLs, QIDO filters, SOP classes, finding codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from radzoo.dicom_out.finding_codes import finding_code, local_code_value
from radzoo.errors import InputError
from radzoo.pacs import (
    AUTH_ENV,
    PacsConnection,
    QueryFilters,
    parse_auth,
    parse_dicomweb_url,
    read_auth,
)
from radzoo.pacs.image_classes import non_image_kind
from radzoo.zoo.dicom_codes import FINDING_CODES


def test_credentials_from_file_or_env_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "auth"
    f.write_text("# PACS account\nbasic alice:pa:ss word\n")
    auth = read_auth(f)
    assert (auth.scheme, auth.username, auth.secret) == ("basic", "alice", "pa:ss word")
    assert "pa:ss" not in repr(auth) and str(f) in repr(auth)
    session = requests.Session()
    auth.apply(session)
    assert session.auth == ("alice", "pa:ss word")
    monkeypatch.setenv(AUTH_ENV, "Bearer abc.def.ghi")
    token = read_auth()
    assert token.scheme == "bearer" and "abc" not in repr(token)
    session = requests.Session()
    token.apply(session)
    assert session.headers["Authorization"] == "Bearer abc.def.ghi"
    monkeypatch.delenv(AUTH_ENV)
    assert read_auth() is None
    for bad in ("", "alice:secret", "basic alice", "bearer two tokens", "digest x"):
        with pytest.raises(InputError) as info:
            parse_auth(bad, "test")
        assert "secret" not in str(info.value)  # a malformed line is never echoed
    with pytest.raises(InputError, match="cannot read"):
        read_auth(tmp_path / "missing")


def test_dicomweb_urls() -> None:
    t = parse_dicomweb_url("https://pacs.example:8443/dicom-web/studies/1.2/series/3.4/instances/5.6")
    assert (t.root, t.study, t.series, t.instance) == ("https://pacs.example:8443/dicom-web", "1.2", "3.4", "5.6")
    assert t.key == "studies/1.2/series/3.4/instances/5.6"
    assert parse_dicomweb_url("http://h/dicom-web/").key == ""
    with pytest.raises(InputError, match="credentials"):
        parse_dicomweb_url("http://user:secret@h/dicom-web")
    with pytest.raises(InputError, match="query"):
        parse_dicomweb_url("http://h/dicom-web?Modality=CR")
    with pytest.raises(InputError, match="resource path"):
        parse_dicomweb_url("http://h/dicom-web/series/3.4")
    with pytest.raises(InputError, match="names a resource"):
        PacsConnection("http://h/dicom-web/studies/1.2")


def test_query_filters() -> None:
    f = QueryFilters.parse(["1.2.3", "1.2.3"], [], "cr, dx", "2024-01-31")
    assert f == QueryFilters(("1.2.3",), (), ("CR", "DX"), "20240131")
    assert "modality CR,DX" in f.describe() and "20240131" in f.describe()
    for kwargs, match in (({"studies": ["1.2.x"]}, "--study"), ({"modality": "C R"}, "--modality"),
                          ({"since": "31/01/2024"}, "--since")):
        with pytest.raises(InputError, match=match):
            QueryFilters.parse(**kwargs)


def test_non_image_sop_classes() -> None:
    assert non_image_kind("1.2.840.10008.5.1.4.1.1.88.34") == "structured report / key object selection"
    assert non_image_kind("1.2.840.10008.5.1.4.1.1.30") == "parametric map"
    assert non_image_kind("1.2.840.10008.5.1.4.1.1.66.4") is not None  # segmentation
    for image in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.2",
                  "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.4"):
        assert non_image_kind(image) is None, image


def test_finding_codes_come_from_the_dicom_dictionary(prior_dir: Path) -> None:
    """Every SCT/DCM finding code radzoo uses is a concept in pydicom's copy of PS3.16."""
    from pydicom.sr._concepts_dict import concepts

    from radzoo.zoo.artifact import read_config

    prior_config = read_config(prior_dir)

    for scheme, value, _meaning in FINDING_CODES.values():
        assert any(value in entry for entry in concepts[scheme].values()), (scheme, value)
    assert finding_code("Pleural Effusion").value == "60046008"
    assert finding_code("pleural_effusion").value == "60046008"
    local = finding_code("Enlarged Cardiomediastinum")
    assert local.scheme_designator == "99RADZOO" and len(local.value) <= 16 and local.meaning == "Enlarged Cardiomediastinum"
    assert local_code_value("Atelectasis") == "ATELECTASIS"
    from radzoo.zoo.card import render_card

    card = render_card(prior_config)
    assert "TID 1500" in card and "| measurement concept (TID 300) | DCM | 122157 | Probability |" in card
    assert "| finding type | SCT | 60046008 | Pleural effusion |" in card and "99RADZOO" in card


def test_extraction_refuses_what_it_cannot_do_over_dicomweb(tmp_path: Path) -> None:
    """Refused before any request (nothing listens on port 9) and before any weights are read."""
    from radzoo.errors import CapabilityError
    from radzoo.extract import extract_features

    url = "http://127.0.0.1:9/dicom-web"
    with pytest.raises(InputError, match="engine='local'"):
        extract_features("mococxr_resnet18", url, tmp_path / "a", engine="ray")
    with pytest.raises(CapabilityError, match="CT series over DICOMweb"):
        extract_features("graphct_copdgene", url, tmp_path / "b")
    with pytest.raises(InputError, match="only input"):
        extract_features("mococxr_resnet18", [url, str(tmp_path)], tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
