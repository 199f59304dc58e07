"""Connector files: the samples load, and a wrong file names file, key and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from i2es_hub.connectors import (
    connector_schema,
    connectors_dir,
    load_connector,
    load_connectors,
)
from i2es_hub.errors import ConfigError

KE = yaml.safe_load((connectors_dir() / "ke-ppb.yaml").read_text())


def test_samples_load() -> None:
    connectors = load_connectors()
    assert {n: c.country for n, c in connectors.items()} == {
        "ch-swissmedic": "CH",
        "de-bfarm": "DE",
        "ke-ppb": "KE",
    }
    ke = connectors["ke-ppb"]
    assert ke.transport_type == "sftp"
    assert ke.transport.conn_id == "ke_ppb_sftp"  # type: ignore[union-attr]
    assert ke.policy.hold == {"KE": frozenset({"EXCESS_ESTIMATE", "EXCESS_ASSESSMENT"})}


def test_samples_match_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = connector_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in sorted(connectors_dir().glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def _write(tmp_path: Path, data: dict, name: str = "ke-ppb") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"country": "KEN"}, "country", "alpha-2"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"schedule": "every 5 minutes"}, "schedule", "cron"),
        ({"batch_size": 0}, "batch_size", "between 1"),
        ({"policy": {"hold": ["SHORTFALL"]}}, "policy.hold", "not a warning code"),
        ({"connection_id": None}, "connection_id", "required for an sftp"),
        ({"outbound_name": "out.xml"}, "outbound_name", "{message_id}"),
        (
            {"mapping": {**KE["mapping"], "inbound": "../i2es_hub/x.xslt"}},
            "mapping.inbound",
            "inside",
        ),
        (
            {"mapping": {**KE["mapping"], "outbound": "ke/missing.xslt"}},
            "mapping.outbound",
            "not found",
        ),
        ({"national_schema": "nope.xsd"}, "national_schema", "not found"),
        (
            {"transport": {**KE["transport"], "password": "hunter2"}},
            "transport.password",
            "credential",
        ),
        ({"transport": {**KE["transport"], "inbox": None}}, "inbox", "required"),
        ({"transport": {**KE["transport"], "type": "ftp"}}, "transport.type", "one of"),
    ],
)
def test_wrong_file_names_file_key_and_reason(
    tmp_path: Path, change: dict, key: str, reason: str
) -> None:
    path = _write(tmp_path, {**KE, **change})
    with pytest.raises(ConfigError) as caught:
        load_connector(path)
    message = str(caught.value)
    assert str(path) in message
    assert key in message
    assert reason in message
    assert "hunter2" not in message


def test_missing_required_keys(tmp_path: Path) -> None:
    data = {k: v for k, v in KE.items() if k not in ("authority", "mapping")}
    with pytest.raises(ConfigError, match=r"\['authority', 'mapping'\] are required"):
        load_connector(_write(tmp_path, data))


def test_folder_holds_only_connector_files(tmp_path: Path) -> None:
    _write(tmp_path, KE)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="only connector files"):
        load_connectors(tmp_path)


def test_one_connector_per_country(tmp_path: Path) -> None:
    _write(tmp_path, KE)
    _write(tmp_path, KE, name="ke-second")
    with pytest.raises(ConfigError, match="one connector per country"):
        load_connectors(tmp_path)


def test_connector_is_frozen() -> None:
    connector = load_connectors()["ke-ppb"]
    with pytest.raises(AttributeError):
        connector.country = "DE"  # type: ignore[misc]


def test_cli_lists_and_prints_schema(hub) -> None:
    listed = hub("connectors", "list", check=True).stdout
    assert "ke-ppb" in listed
    assert "sftp" in listed
    assert "de-bfarm" in listed
    schema = json.loads(hub("connectors", "schema", check=True).stdout)
    assert "transport" in schema["properties"]


def test_cli_mapping_test_shows_canonical_and_findings(hub) -> None:
    sample = connectors_dir().parent / "mappings/ke/samples/import-authorization.xml"
    result = hub("mapping", "test", "ke-ppb", str(sample), check=True)
    assert "<DocumentNumber>KE-IA-2026-00042</DocumentNumber>" in result.stdout
    assert "import-authorization KE/KE-IA-2026-00042" in result.stderr


def test_cli_mapping_test_reports_a_bad_file(hub, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<PermitDocument xmlns='urn:ke:ppb:epermit:2'/>")
    result = hub("mapping", "test", "ke-ppb", str(bad))
    assert result.returncode == 1
    assert "SCHEMA_INVALID" in result.stderr
    assert "bad.xml, line 1" in result.stderr


def test_cli_mapping_test_outbound(hub) -> None:
    example = connectors_dir().parent / "examples/export-authorization.xml"
    result = hub("mapping", "test", "ke-ppb", "--outbound", str(example), check=True)
    assert 'kind="EXPORT_PERMIT"' in result.stdout


def test_cli_check_pull_push_against_real_sftp(hub, kenya, engine) -> None:
    from i2es_hub.simulators.national import sample

    hub.env.update(kenya.env)
    folder = str(kenya.connector.path.parent)
    kenya.send("KE-IA-2026-00042.xml", sample("ke-ppb", "import-authorization.xml"))
    check = hub("connectors", "check", "ke-ppb", "--folder", folder, check=True)
    assert "host key verified, 1 file(s) ready" in check.stdout
    assert "KE-IA-2026-00042.xml" in check.stdout

    pulled = hub("pull", "ke-ppb", "--folder", folder, check=True).stdout
    assert "1 files, 1 documents" in pulled
    assert "1 archived" in pulled
    pushed = hub("push", "ke-ppb", "--folder", folder, check=True).stdout
    assert "0 due" in pushed


def test_cli_check_refuses_a_changed_host_key(hub, kenya) -> None:
    from i2es_hub.simulators.sftp_server import new_ed25519_key

    [(name, uri)] = kenya.env.items()
    _, other = new_ed25519_key()
    from urllib.parse import quote

    start = uri.index("host_key=") + len("host_key=")
    end = uri.index("&", start)
    hub.env[name] = uri[:start] + quote(other, safe="") + uri[end:]
    folder = str(kenya.connector.path.parent)
    result = hub("connectors", "check", "ke-ppb", "--folder", folder)
    assert result.returncode == 1
    assert "FAIL  sftp connection" in result.stdout
    assert "host key" in result.stdout
