"""An alert raised through the API is pushed at once to the exporter's own system.

DE is reached through its file drop connector. KE uploads a shortfall endorsement
to the hub's API; before KE's answer is complete the SHORTFALL alert has been
written, in DE's national format, into DE's drop folder, without waiting for DE's
connector to run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from i2es_hub.simulators.national import national_system
from tests.api.conftest import xml_headers
from tests.conftest import EXAMPLES


def test_shortfall_uploaded_to_the_api_reaches_the_exporter_system_at_once(
    client, country_tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with national_system("de-bfarm", tmp_path) as de:
        monkeypatch.setenv("I2ES_HUB_CONNECTORS_DIR", str(tmp_path / "connectors"))
        for who, name in (
            ("ke", "import-authorization"),
            ("de", "export-authorization"),
        ):
            r = client.post(
                "/v1/documents",
                content=(EXAMPLES / f"{name}.xml").read_bytes(),
                headers=xml_headers(country_tokens.of(who)),
            )
            assert r.status_code == 202, r.text
        before = len(de.received())
        r = client.post(
            "/v1/documents",
            content=(EXAMPLES / "endorsement-shortfall.xml").read_bytes(),
            headers=xml_headers(country_tokens.ke),
        )
        assert r.status_code == 202
        assert "SHORTFALL" in {f["code"] for f in r.json()["findings"]}
        delivered = de.received()[before:]
    names = [name for name, _ in delivered]
    # the endorsement and its alert, in DE's own batch format
    assert any("ALERT" in n.upper() for n in names), names
    assert len(delivered) >= 2
    assert all(data.lstrip().startswith(b"<?xml") for _, data in delivered)
