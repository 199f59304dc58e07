"""Regressions the hostile corpus found in the hub, one test per bug, named after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2es_hub import xmlsafe
from i2es_hub.ingest import Preparer
from tests.corpus.conftest import Measure
from tests.corpus.generate import FILES, huge_document


def test_huge_single_document_in_a_streamed_file_is_refused_while_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Broke: a 200 MB document was built whole by iterparse (2 GB resident) and
    # then read again whole for the quarantine. Scaled down: 1 MiB limit, 40 MB.
    monkeypatch.setattr(xmlsafe, "MAX_DOCUMENT_BYTES", 1024 * 1024)
    path = huge_document(tmp_path / "huge.xml", 40 * 1024 * 1024)

    with Measure() as measure:
        candidates = list(Preparer([]).prepare_path(path, "KE"))

    assert len(candidates) == 1
    (finding,) = candidates[0].findings
    assert finding.code == "UNSAFE_XML"
    assert "over the limit for one document" in finding.message
    assert "first 64 KiB kept" in finding.message
    assert len(candidates[0].original) == 65536
    assert measure.rss_mb < 100, f"peak RSS grew {measure.rss_mb:.0f} MB"


@pytest.mark.parametrize(
    "encoding", ["utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
def test_doctype_in_wide_encodings_is_refused_before_parsing(encoding: str) -> None:
    # Broke: a UTF-32 or BOM-less UTF-16 DOCTYPE passed the byte scan and reached
    # libxml2, which refused it only by its amplification limit (SCHEMA_INVALID).
    text = (FILES / "billion-laughs.xml").read_text(encoding="utf-8")
    data = text.replace("UTF-8", encoding.upper()).encode(encoding)
    with pytest.raises(xmlsafe.UnsafeXML, match="DOCTYPE"):
        xmlsafe.check_prolog(data[:4096])
