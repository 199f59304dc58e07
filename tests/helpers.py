"""Build test documents by changing the examples, element by element."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from i2es_hub.canonical import NS

NSMAP = {"c": NS}


def edit(data: bytes, **changes: str | None) -> bytes:
    """Change elements by XPath (``c:`` prefix; ``__`` for ``/``); None removes."""
    root = etree.fromstring(data)
    for path, value in changes.items():
        xpath = path.replace("__", "/")
        nodes = root.xpath(xpath, namespaces=NSMAP)
        assert nodes, f"no element at {xpath}"
        for node in nodes:
            if value is None:
                node.getparent().remove(node)
            else:
                node.text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def change(data: bytes, fn: Callable[[etree._Element], None]) -> bytes:
    """Apply ``fn`` to the parsed root and serialize again."""
    root = etree.fromstring(data)
    fn(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def add(
    parent: etree._Element, name: str, text: str, before: str | None = None
) -> etree._Element:
    """Add a canonical child element, optionally before a named sibling."""
    el = etree.Element(f"{{{NS}}}{name}")
    el.text = text
    anchor = parent.find(f"{{{NS}}}{before}") if before else None
    if anchor is not None:
        anchor.addprevious(el)
    else:
        parent.append(el)
    return el


def batch(*docs: bytes) -> bytes:
    """A canonical Batch file holding ``docs``."""
    root = etree.Element(f"{{{NS}}}Batch", nsmap={None: NS})
    for d in docs:
        root.append(etree.fromstring(d))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
