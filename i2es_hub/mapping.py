"""Mappings between national formats and the canonical schema, both directions.

A country's mapping lives in ``mappings/<country>/``:

* XML formats: two XSLT 1.0 stylesheets, one national → canonical (inbound), one
  canonical → national (outbound). They are compiled once per process and run
  with file and network access denied. Code lists reach them through extension
  functions in the namespace ``urn:i2es-hub:mapping`` (prefix ``map`` below):
  ``map:code('substances', $national)`` gives the canonical value,
  ``map:code('substances', $national, 'convention')`` another column of the same
  row, and ``map:national('substances', $canonical)`` the way back.
* JSON formats: one declarative field map (YAML) read in both directions
  (see `FieldMap`).
* Code tables: ``codes/<table>.csv`` with a header whose first two columns are
  ``national`` and ``canonical``; further columns are extra facts about the
  row (a substance's convention and schedule).

Inbound input is parsed with the hub's safe parser (`i2es_hub.xmlsafe`) and, when
the connector names one, checked against the national XSD before any mapping.
Every failure raises `MappingError`, which says what is wrong and where, and
carries the finding code the pipeline quarantines the input with.

Limitations: XSLT 1.0 only (libxslt); the JSON field map handles objects, lists
of objects and scalar leaves, which covers flat national APIs but not
polymorphic payloads.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from i2es_hub import canonical, xmlsafe
from i2es_hub.errors import ConfigError, RejectedInput
from i2es_hub.findings import Code

log = logging.getLogger(__name__)

MAP_NS = "urn:i2es-hub:mapping"
REPO_ROOT = Path(__file__).resolve().parent.parent


def mappings_dir() -> Path:
    """The folder mappings are read from: ``$I2ES_HUB_MAPPINGS_DIR`` or mappings/."""
    return Path(os.environ.get("I2ES_HUB_MAPPINGS_DIR", REPO_ROOT / "mappings"))


def national_xsd_dir() -> Path:
    """The national schemas' folder: ``$I2ES_HUB_XSD_DIR`` or xsd/national/."""
    return Path(os.environ.get("I2ES_HUB_XSD_DIR", REPO_ROOT / "xsd" / "national"))


class MappingError(RejectedInput):
    """National input that cannot be turned into canonical XML (or back).

    Attributes:
        code: The finding code to quarantine the input with.
        line: Line in the national file, when known.
    """

    def __init__(
        self, message: str, *, code: Code = Code.MAPPING_FAILED, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.line = line


def resolve_inside(folder: Path, relative: str, what: str) -> Path:
    """Resolve ``relative`` under ``folder``, refusing anything that leaves it.

    Raises:
        ConfigError: The path escapes the folder or does not exist.
    """
    root = folder.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ConfigError(f"{what} {relative!r} must stay inside {root}")
    if not path.exists():
        raise ConfigError(f"{what} {relative!r} not found (looked for {path})")
    return path


# ----- code tables ----------------------------------------------------------------


@dataclass(frozen=True)
class CodeTable:
    """One code list: national value <-> canonical value, plus extra columns.

    Attributes:
        name: The table's name (its file name without ``.csv``).
        path: The CSV file.
        rows: National value -> the row's columns by name.
    """

    name: str
    path: Path
    rows: Mapping[str, Mapping[str, str]]

    def canonical(self, national: str, column: str = "canonical") -> str:
        """The canonical value (or another column) for a national value.

        Raises:
            MappingError: The value is not in the table.
        """
        row = self.rows.get(national.strip())
        if row is None:
            raise MappingError(
                f"{self.name} value {national.strip()!r} is not in the code table "
                f"{self.path.parent.parent.name}/codes/{self.path.name}; add a row "
                "for it or correct the national document"
            )
        if column not in row:
            raise MappingError(
                f"code table {self.path.name} has no column {column!r}; "
                f"columns are {sorted(row)}"
            )
        return row[column]

    def national(self, canonical: str) -> str:
        """The national value for a canonical value (the first row that has it).

        Raises:
            MappingError: No row has that canonical value.
        """
        wanted = canonical.strip()
        for national, row in self.rows.items():
            if row["canonical"] == wanted:
                return national
        raise MappingError(
            f"no {self.name} row in {self.path.parent.parent.name}/codes/"
            f"{self.path.name} has the canonical value {wanted!r}; add one"
        )


def load_code_tables(folder: Path) -> dict[str, CodeTable]:
    """Read every ``*.csv`` table of a ``codes`` folder.

    Raises:
        ConfigError: A table lacks the ``national``/``canonical`` header or
            repeats a national value; the message names file and row.
    """
    tables: dict[str, CodeTable] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if header[:2] != ["national", "canonical"]:
                raise ConfigError(
                    f"{path}: the header must start with 'national,canonical', "
                    f"not {','.join(header)!r}"
                )
            rows: dict[str, dict[str, str]] = {}
            for number, row in enumerate(reader, start=2):
                key = (row["national"] or "").strip()
                if key in rows:
                    raise ConfigError(f"{path}, line {number}: {key!r} appears twice")
                rows[key] = {k: (v or "").strip() for k, v in row.items()}
        tables[path.stem] = CodeTable(path.stem, path, rows)
    return tables


class Codes:
    """The code tables of one mapping, looked up by table name."""

    def __init__(self, tables: Mapping[str, CodeTable], where: str) -> None:
        self.tables = dict(tables)
        self.where = where

    def table(self, name: str) -> CodeTable:
        """The table called ``name``.

        Raises:
            MappingError: There is no such table.
        """
        try:
            return self.tables[name]
        except KeyError:
            raise MappingError(
                f"the mapping asks for code table {name!r}, which {self.where} "
                f"does not have (tables: {sorted(self.tables)})"
            ) from None

    def xslt_extensions(self) -> dict[tuple[str, str], Any]:
        """The ``map:code`` and ``map:national`` functions for XSLT."""

        def code(_ctx: Any, table: Any, value: Any, column: Any = "canonical") -> str:
            return self.table(_text(table)).canonical(_text(value), _text(column))

        def national(_ctx: Any, table: Any, value: Any) -> str:
            return self.table(_text(table)).national(_text(value))

        return {(MAP_NS, "code"): code, (MAP_NS, "national"): national}


def _text(value: Any) -> str:
    """XPath arguments arrive as strings, node lists or numbers; make a string."""
    if isinstance(value, list):
        return "".join(
            v if isinstance(v, str) else "".join(v.itertext()) for v in value[:1]
        )
    return str(value)


# ----- the mapping of one country -----------------------------------------------------


@dataclass(frozen=True)
class MappingSpec:
    """Where a connector's mapping files are, relative to ``mappings/``.

    Attributes:
        inbound: National -> canonical: an ``.xsl``/``.xslt`` file or a field map
            (``.yaml``).
        outbound: Canonical -> national, same kinds.
        codes: Folder of code tables.
        national_schema: National XSD under ``xsd/national/``, or None.
    """

    inbound: str
    outbound: str
    codes: str
    national_schema: str | None = None

    @property
    def format(self) -> str:
        """``xml`` when the inbound mapping is XSLT, else ``json``."""
        return "xml" if self.inbound.endswith((".xsl", ".xslt")) else "json"


class CountryMapping:
    """A compiled mapping: safe to share between threads of one process.

    Obtain it with `compile_mapping`, which caches it per process.
    """

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        root = mappings_dir()
        codes_dir = resolve_inside(root, spec.codes, "mapping key 'codes'")
        self.codes = Codes(load_code_tables(codes_dir), f"mappings/{spec.codes}")
        self.format = spec.format
        self.schema: etree.XMLSchema | None = None
        if spec.national_schema:
            self.schema = _compile_xsd(
                resolve_inside(
                    national_xsd_dir(), spec.national_schema, "national_schema"
                )
            )
        self._inbound = self._load(root, spec.inbound, "mapping key 'inbound'")
        self._outbound = self._load(root, spec.outbound, "mapping key 'outbound'")

    def _load(self, root: Path, relative: str, what: str) -> etree.XSLT | FieldMap:
        path = resolve_inside(root, relative, what)
        if path.suffix in (".xsl", ".xslt"):
            return _compile_xslt(path, self.codes)
        if path.suffix in (".yaml", ".yml"):
            return FieldMap.load(path, self.codes)
        raise ConfigError(
            f"{what} {relative!r} must be an XSLT (.xsl, .xslt) or a field map (.yaml)"
        )

    @property
    def content_type(self) -> str:
        """MIME type of the national format."""
        return "application/xml" if self.format == "xml" else "application/json"

    def to_canonical(self, data: bytes, source: str) -> bytes:
        """Map national bytes to canonical XML (one document or a Batch).

        Raises:
            MappingError: Unsafe or malformed input, not valid against the national
                schema, or a value the mapping cannot translate.
        """
        if isinstance(self._inbound, FieldMap):
            parsed = _parse_json(data, source)
            return etree.tostring(
                self._inbound.to_canonical(parsed, source),
                xml_declaration=True,
                encoding="UTF-8",
            )
        try:
            root = xmlsafe.parse(data)
        except xmlsafe.UnsafeXML as exc:
            raise MappingError(f"{source}: {exc}", code=Code.UNSAFE_XML) from exc
        except xmlsafe.MalformedXML as exc:
            raise MappingError(
                f"{source}, line {exc.line}: {exc}",
                code=Code.SCHEMA_INVALID,
                line=exc.line,
            ) from exc
        self._check_national(root, source)
        result = _apply(self._inbound, root, source, "inbound")
        return etree.tostring(result, xml_declaration=True, encoding="UTF-8")

    def _check_national(self, root: etree._Element, source: str) -> None:
        if self.schema is None or self.schema.validate(root):
            return
        error = self.schema.error_log[0]
        raise MappingError(
            f"{source}, line {error.line}: not valid against the national schema "
            f"{self.spec.national_schema}: {error.message}",
            code=Code.SCHEMA_INVALID,
            line=error.line,
        )

    def to_national(self, message: bytes) -> bytes:
        """Render a canonical Message envelope (or a bare document) nationally.

        Raises:
            MappingError: The payload has no national rendering.
        """
        root = etree.fromstring(message, etree.XMLParser(resolve_entities=False))
        if isinstance(self._outbound, FieldMap):
            data = self._outbound.to_national(root)
            return json.dumps(data, ensure_ascii=False, indent=2).encode()
        result = _apply(self._outbound, root, "canonical message", "outbound")
        return etree.tostring(
            result, xml_declaration=True, encoding="UTF-8", pretty_print=True
        )


@functools.lru_cache(maxsize=64)
def compile_mapping(spec: MappingSpec) -> CountryMapping:
    """Load and compile a mapping once per process.

    Raises:
        ConfigError: A file is missing, outside ``mappings/``, or does not compile.
    """
    mapping = CountryMapping(spec)
    log.debug("compiled mapping %s -> %s", spec.inbound, spec.outbound)
    return mapping


def _compile_xsd(path: Path) -> etree.XMLSchema:
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        return etree.XMLSchema(etree.parse(str(path), parser))
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise ConfigError(f"national schema {path}: {exc}") from exc


def _compile_xslt(path: Path, codes: Codes) -> etree.XSLT:
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        return etree.XSLT(
            etree.parse(str(path), parser),
            extensions=codes.xslt_extensions(),
            access_control=etree.XSLTAccessControl.DENY_ALL,
        )
    except (etree.XMLSyntaxError, etree.XSLTParseError) as exc:
        raise ConfigError(f"mapping {path}: does not compile: {exc}") from exc


def _apply(
    transform: etree.XSLT | FieldMap, root: etree._Element, source: str, way: str
) -> etree._Element:
    assert isinstance(transform, etree.XSLT)
    try:
        result = transform(root)
    except MappingError as exc:
        raise MappingError(f"{source}: {exc}") from exc
    except etree.XSLTApplyError as exc:
        raise MappingError(
            f"{source}: the {way} mapping stopped: {exc}; correct the document"
        ) from exc
    out = result.getroot()
    if out is None:
        raise MappingError(f"{source}: the {way} mapping produced no document")
    return out


def _parse_json(data: bytes, source: str) -> Any:
    if len(data) > xmlsafe.MAX_DOCUMENT_BYTES:
        raise MappingError(
            f"{source}: {len(data)} bytes, over the limit of "
            f"{xmlsafe.MAX_DOCUMENT_BYTES} bytes",
            code=Code.UNSAFE_XML,
        )
    try:
        return json.loads(data, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise MappingError(f"{source}: not valid JSON: {exc}", line=line) from exc


# ----- the JSON field map ----------------------------------------------------------


class FieldMap:
    """A declarative map between a JSON format and canonical XML, both ways.

    The YAML file has::

        type_field: documentType          # JSON key naming the document type
        envelope:                         # outbound wrapper (all keys optional)
          message_id: messageId
          kind: kind
          findings: hubFindings
          payload: document
        documents:
          IMPORT_PERMIT:                  # national document type
            canonical: ImportAuthorization
            fields: {...}                 # canonical elements, in schema order

    Each entry of ``fields`` is a canonical element name and how to fill it:

    * ``"a.b"`` or ``{path: a.b}``: text from the dotted JSON path; options
      ``code: <table>`` (translate through a code table), ``column: <name>``
      (another column of that row; inbound only), ``type: number|boolean``
      (the JSON type on the way out), ``optional: true``, and ``attrs:
      {name: <field>}`` for the element's attributes;
    * ``{const: value}``: a fixed value (inbound only);
    * ``{fields: {...}}``: a container element; ``at: path`` reads (and
      writes) its fields inside that JSON object, ``optional: path`` leaves it
      out when that path is absent, ``each: path`` repeats it for every item of
      a JSON list (paths inside are relative to the item) and ``number_attr:
      number`` numbers the repeats (``optional: true`` allows an empty or
      absent list). A repeated element with text of its own
      gives that text as ``value: <field>`` instead of (or beside) ``fields``.
    """

    def __init__(self, path: Path, spec: Mapping[str, Any], codes: Codes) -> None:
        self.path = path
        self.codes = codes
        try:
            self.type_field: str = spec["type_field"]
            self.documents: dict[str, dict[str, Any]] = dict(spec["documents"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"field map {path}: needs 'type_field' and 'documents'"
            ) from exc
        self.envelope: dict[str, str] = dict(spec.get("envelope") or {})
        self.by_root = {d["canonical"]: name for name, d in self.documents.items()}

    @classmethod
    def load(cls, path: Path, codes: Codes) -> FieldMap:
        """Read a field map file.

        Raises:
            ConfigError: Not YAML, or missing its top-level keys.
        """
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"field map {path}: not valid YAML: {exc}") from exc
        if not isinstance(spec, dict):
            raise ConfigError(f"field map {path}: must be a mapping")
        return cls(path, spec, codes)

    # inbound

    def to_canonical(self, data: Any, source: str) -> etree._Element:
        """Build the canonical document for one national JSON document.

        Raises:
            MappingError: Unknown type, missing field or untranslatable value.
        """
        if not isinstance(data, dict):
            raise MappingError(f"{source}: the JSON document must be an object")
        kind = data.get(self.type_field)
        if kind not in self.documents:
            raise MappingError(
                f"{source}: {self.type_field} {kind!r} is not one of "
                f"{sorted(self.documents)}"
            )
        spec = self.documents[kind]
        root = etree.Element(canonical.q(spec["canonical"]), nsmap={None: canonical.NS})
        root.set("schemaVersion", "1.0")
        try:
            self._fill(root, spec["fields"], data, "")
        except MappingError as exc:
            raise MappingError(f"{source}: {exc}") from exc
        return root

    def _fill(
        self, parent: etree._Element, fields: Mapping[str, Any], data: Any, at: str
    ) -> None:
        for name, raw in fields.items():
            rule = _rule(raw)
            if "fields" in rule or "each" in rule:
                self._container(parent, name, rule, data, at)
                continue
            value = self._leaf(rule, data, at, name)
            if value is not None:
                el = etree.SubElement(parent, canonical.q(name))
                self._fill_element(el, rule, value, data, at, name)

    def _fill_element(
        self,
        el: etree._Element,
        rule: Mapping[str, Any],
        value: str,
        data: Any,
        at: str,
        name: str,
    ) -> None:
        el.text = value
        for attr, attr_raw in (rule.get("attrs") or {}).items():
            attr_value = self._leaf(_rule(attr_raw), data, at, f"{name}/@{attr}")
            if attr_value is not None:
                el.set(attr, attr_value)

    def _container(
        self,
        parent: etree._Element,
        name: str,
        rule: Mapping[str, Any],
        data: Any,
        at: str,
    ) -> None:
        when = rule.get("optional")
        if isinstance(when, str) and _get(data, when) is None:
            return
        if "at" in rule:
            data, at = _get(data, rule["at"]), _join(at, rule["at"])
            if not isinstance(data, dict):
                raise MappingError(f"field {at!r} (for {name}) must be an object")
        if "each" not in rule:
            el = etree.SubElement(parent, canonical.q(name))
            self._fill(el, rule.get("fields") or {}, data, at)
            return
        where = _join(at, rule["each"])
        items = _get(data, rule["each"])
        if items is None and when is True:
            items = []
        if not isinstance(items, list) or (not items and when is not True):
            raise MappingError(f"field {where!r} (for {name}) must be a non-empty list")
        for index, item in enumerate(items, start=1):
            el = etree.SubElement(parent, canonical.q(name))
            if "number_attr" in rule:
                el.set(rule["number_attr"], str(index))
            if "value" in rule:
                value_rule = _rule(rule["value"])
                text = self._leaf(value_rule, item, f"{where}[{index}]", name)
                self._fill_element(
                    el, value_rule, text or "", item, f"{where}[{index}]", name
                )
            self._fill(el, rule.get("fields") or {}, item, f"{where}[{index}]")

    def _leaf(
        self, rule: Mapping[str, Any], data: Any, at: str, name: str
    ) -> str | None:
        if "const" in rule:
            return str(rule["const"])
        value = _get(data, rule["path"])
        if value is None:
            if rule.get("optional"):
                return None
            raise MappingError(
                f"field {_join(at, rule['path'])!r} (for {name}) is missing"
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, dict | list):
            raise MappingError(
                f"field {_join(at, rule['path'])!r} must be a single value, "
                f"not {type(value).__name__}"
            )
        else:
            text = str(value)
        if "code" in rule:
            try:
                table = self.codes.table(rule["code"])
                text = table.canonical(text, rule.get("column", "canonical"))
            except MappingError as exc:
                raise MappingError(f"field {_join(at, rule['path'])!r}: {exc}") from exc
        return text

    # outbound

    def to_national(self, root: etree._Element) -> dict[str, Any]:
        """Build the national JSON for a canonical Message (or a bare document).

        Raises:
            MappingError: The payload's document type has no national form.
        """
        if root.tag != canonical.q("Message"):
            return self._document(root)
        out: dict[str, Any] = {}
        env = self.envelope
        payload = root.find(f"{canonical.q('Payload')}/*")
        if "message_id" in env:
            out[env["message_id"]] = root.findtext(canonical.q("MessageId"))
        if "kind" in env:
            out[env["kind"]] = root.findtext(canonical.q("Kind"))
        if "findings" in env:
            out[env["findings"]] = [
                {
                    "code": f.get("code"),
                    "severity": f.get("severity"),
                    **({"line": int(f.get("line", "0"))} if f.get("line") else {}),
                    "message": f.text or "",
                }
                for f in root.iterfind(
                    f"{canonical.q('Findings')}/{canonical.q('Finding')}"
                )
            ]
        if payload is None:
            raise MappingError("the message has no payload")
        out[env.get("payload", "document")] = self._document(payload)
        return out

    def _document(self, element: etree._Element) -> dict[str, Any]:
        local = etree.QName(element).localname
        kind = self.by_root.get(local)
        if kind is None:
            raise MappingError(
                f"{local} has no national form in field map {self.path.name}; "
                f"it maps {sorted(self.by_root)}"
            )
        out: dict[str, Any] = {self.type_field: kind}
        self._emit(out, self.documents[kind]["fields"], element)
        return out

    def _emit(
        self, out: dict[str, Any], fields: Mapping[str, Any], element: etree._Element
    ) -> None:
        for name, raw in fields.items():
            rule = _rule(raw)
            children = element.findall(canonical.q(name))
            if "fields" in rule or "each" in rule:
                target = out
                if "at" in rule and children:
                    target = _ensure(out, rule["at"])
                if "each" in rule:
                    _put(target, rule["each"], [self._item(rule, c) for c in children])
                elif children:
                    self._emit(target, rule.get("fields") or {}, children[0])
                continue
            if children:
                self._emit_leaf(out, rule, children[0])

    def _item(self, rule: Mapping[str, Any], child: etree._Element) -> dict[str, Any]:
        item: dict[str, Any] = {}
        if "value" in rule:
            self._emit_leaf(item, _rule(rule["value"]), child)
        self._emit(item, rule.get("fields") or {}, child)
        return item

    def _emit_leaf(
        self, out: dict[str, Any], rule: Mapping[str, Any], child: etree._Element
    ) -> None:
        if "const" in rule or "column" in rule:
            return  # fixed or derived values are not written back
        _put(out, rule["path"], self._national_value(rule, child.text or ""))
        for attr, attr_raw in (rule.get("attrs") or {}).items():
            attr_rule = _rule(attr_raw)
            value = child.get(attr)
            if value is not None and "const" not in attr_rule:
                _put(out, attr_rule["path"], self._national_value(attr_rule, value))

    def _national_value(self, rule: Mapping[str, Any], text: str) -> Any:
        if "code" in rule:
            text = self.codes.table(rule["code"]).national(text)
        kind = rule.get("type")
        if kind == "number":
            try:
                number = Decimal(text)
            except InvalidOperation as exc:
                raise MappingError(f"{text!r} is not a number") from exc
            return (
                int(number) if number == number.to_integral_value() else float(number)
            )
        if kind == "boolean":
            return text == "true"
        return text


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def _ensure(data: dict[str, Any], path: str) -> dict[str, Any]:
    for key in path.split("."):
        data = data.setdefault(key, {})
    return data


def _rule(raw: Any) -> Mapping[str, Any]:
    return {"path": raw} if isinstance(raw, str) else raw


def _join(at: str, path: str) -> str:
    return f"{at}.{path}" if at else path


def iter_tables(mapping: CountryMapping) -> Iterable[CodeTable]:
    """The code tables of a compiled mapping, for reports."""
    return mapping.codes.tables.values()


__all__ = [
    "MAP_NS",
    "CodeTable",
    "Codes",
    "CountryMapping",
    "FieldMap",
    "MappingError",
    "MappingSpec",
    "compile_mapping",
    "iter_tables",
    "load_code_tables",
    "mappings_dir",
    "national_xsd_dir",
    "resolve_inside",
]
