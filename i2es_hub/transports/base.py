"""What every transport offers, and the values that cross its boundary.

A transport moves bytes between the hub and one country's national system. The
hub opens a *session* with a context manager (``open_transport(config)``), and
the session offers four operations:

* ``list_ready(limit)``: the inbox entries that are complete and may be taken;
* ``fetch(files)``: their bytes, one `Fetched` per file;
* ``archive(files)``: move them out of the inbox (or delete them), called by the
  hub only *after* it has committed the documents: store, then acknowledge;
* ``push(messages)``: deliver outgoing messages so that the receiver never sees
  a partial file and a repeat is harmless.

When is an inbox file *ready*? (file drop and SFTP)

1. Its name matches the connector's pattern and is not a temporary name (a name
   starting with ``.`` or ending in ``.tmp``, ``.part`` or ``.filepart``).
2. Its modification time is at least ``min_age`` seconds old: the writer has not
   touched it for that long.
3. If this session has listed it before, its size has not changed since.

Limitations: rule 3 only helps a session that lists more than once (a
long-running poller); a sender that sets an old modification time while still
writing (``scp -p``, ``rsync -t`` in place) defeats rule 2 on the first listing.
Such senders must write under a temporary name and rename when done, which is
what the hub itself does when it pushes.

Errors are the hub's own (`i2es_hub.errors`): a problem with one file is
reported in its `Fetched` or `PushResult` and the batch goes on; a problem with
the peer (unreachable, dropped connection, refused host key) raises.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from i2es_hub.errors import ConfigError, TransportError

#: Longest remote name accepted, in UTF-8 bytes (the usual file system limit).
MAX_NAME_BYTES = 255

#: Name endings that mark a file still being written.
TEMPORARY_SUFFIXES = (".tmp", ".part", ".filepart")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class RemoteFile:
    """One entry of a peer's inbox.

    Attributes:
        name: The name as the peer gives it. Never used as a local path.
        size: Size in bytes (for REST, as announced by the peer).
        mtime: Modification (or creation) time, seconds since the epoch, UTC.
        ref: The transport's handle for the entry: the REST item id; for file
            drop and SFTP it equals ``name``.
    """

    name: str
    size: int
    mtime: float
    ref: str = ""


@dataclass(frozen=True)
class Fetched:
    """The outcome of fetching one file.

    Attributes:
        file: The file that was asked for.
        data: Its bytes; empty when ``error`` is set.
        error: Why this one file could not be taken (hostile name, over the size
            cap, unreadable), or None. The rest of the batch is not affected.
    """

    file: RemoteFile
    data: bytes = b""
    error: TransportError | None = None

    @property
    def ok(self) -> bool:
        """True when the bytes were read."""
        return self.error is None


@dataclass(frozen=True)
class OutboundMessage:
    """A message to deliver to a peer.

    Attributes:
        message_id: Stable id of this delivery; the same message always carries
            the same id, so a repeat can be recognised by the receiver.
        filename: The file name the receiver expects (used by file transports;
            sent as metadata by REST).
        data: The bytes to deliver.
        content_type: MIME type of ``data``.
    """

    message_id: str
    filename: str
    data: bytes
    content_type: str = "application/xml"

    def __post_init__(self) -> None:
        if not _SAFE_ID.fullmatch(self.message_id):
            raise ValueError(
                f"message id {self.message_id!r} must be 1-128 characters of "
                "letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        reason = name_problem(self.filename)
        if reason is not None:
            raise ValueError(
                f"file name {self.filename!r} for message {self.message_id}: {reason}"
            )

    @property
    def remote_name(self) -> str:
        """The final name on the peer: ``filename``, prefixed by the id if absent.

        Carrying the message id makes a repeated push land on the same name.
        """
        if self.message_id in self.filename:
            return self.filename
        return f"{self.message_id}_{self.filename}"

    @property
    def temporary_name(self) -> str:
        """The name written first, then renamed: ``.tmp-<message_id>``."""
        return f".tmp-{self.message_id}"


@dataclass(frozen=True)
class PushResult:
    """The outcome of pushing one message.

    Attributes:
        message_id: The message's id.
        remote: Where it went: remote path or URL.
        error: Why the peer did not take it, or None when it did.
        duplicate: True when the peer said it had this message already.
    """

    message_id: str
    remote: str
    error: TransportError | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """True when the peer took the message."""
        return self.error is None


@runtime_checkable
class Transport(Protocol):
    """An open session with one peer. Obtain it from ``open_transport``."""

    def list_ready(self, limit: int | None = None) -> list[RemoteFile]:
        """Return the inbox entries that are complete, oldest first."""
        ...

    def fetch(self, files: Iterable[RemoteFile]) -> Iterator[Fetched]:
        """Yield one `Fetched` per file, in the order given."""
        ...

    def archive(self, files: Iterable[RemoteFile]) -> int:
        """Move (or delete) files the hub has committed; return how many moved."""
        ...

    def push(self, messages: Sequence[OutboundMessage]) -> list[PushResult]:
        """Deliver messages; return one `PushResult` per message, in order."""
        ...


def name_problem(name: str) -> str | None:
    r"""Say why a remote name cannot be used, or return None when it can.

    A remote name must be a single plain path component: not empty, not ``.`` or
    ``..``, no ``/`` or ``\``, no NUL or other control character, and at most
    `MAX_NAME_BYTES` bytes in UTF-8.
    """
    if not name:
        return "the name is empty"
    if name in (".", ".."):
        return "the name is a directory reference"
    if "/" in name or "\\" in name:
        return "the name contains a path separator"
    if "\x00" in name:
        return "the name contains a NUL byte"
    if _CONTROL.search(name):
        return "the name contains a control character"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return f"the name is {len(encoded)} bytes long, over {MAX_NAME_BYTES}"
    return None


def is_temporary_name(name: str) -> bool:
    """True for names that mark a file still being written."""
    return name.startswith(".") or name.endswith(TEMPORARY_SUFFIXES)


class StabilityFilter:
    """Applies the readiness rules of the module docstring to listings.

    It remembers the size of each name it has seen, for the life of a session.
    """

    def __init__(self, pattern: str, min_age: float) -> None:
        self._pattern = pattern
        self._min_age = min_age
        self._last_size: dict[str, int] = {}

    def ready(self, entries: Iterable[RemoteFile], now: float) -> list[RemoteFile]:
        """Return the ready entries, oldest first (then by name)."""
        chosen = []
        seen: dict[str, int] = {}
        for entry in entries:
            if is_temporary_name(entry.name):
                continue
            if not fnmatch.fnmatchcase(entry.name, self._pattern):
                continue
            seen[entry.name] = entry.size
            previous = self._last_size.get(entry.name)
            if previous is not None and previous != entry.size:
                continue
            if now - entry.mtime < self._min_age:
                continue
            chosen.append(entry)
        self._last_size = seen
        chosen.sort(key=lambda entry: (entry.mtime, entry.name))
        return chosen


# --- configuration helpers ---------------------------------------------------


class ConfigReader:
    """Reads typed values from a connector's transport mapping.

    Every error names the connector, the key and the reason.
    """

    def __init__(self, name: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        self.name = name
        self.data = data
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"connector {name!r}: unknown transport key(s) {unknown}; "
                f"allowed keys are {sorted(allowed)}"
            )

    def _fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"connector {self.name!r}: transport key {key!r} {reason}")

    def text(self, key: str, default: str | None = None) -> str:
        """Return a required (or defaulted) non-empty string."""
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, "must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        """Return a string or None when the key is absent."""
        if self.data.get(key) is None:
            return None
        return self.text(key)

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        """Return a number at least ``minimum``."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, not {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, not {value}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        """Return an integer at least ``minimum``."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be a whole number, not {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, not {value}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """Return a boolean."""
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, not {value!r}")
        return value

    def choice(self, key: str, default: str, options: Sequence[str]) -> str:
        """Return one of ``options``."""
        value = self.text(key, default)
        if value not in options:
            raise self._fail(key, f"must be one of {list(options)}, not {value!r}")
        return value


@dataclass(frozen=True)
class InboxRules:
    """Rules shared by the folder-based transports (file drop and SFTP).

    Attributes:
        inbox: Folder the peer drops files into for the hub.
        outbox: Folder the hub pushes files into for the peer.
        pattern: Shell-style pattern of inbox names to take, e.g. ``*.xml``.
        min_age: Seconds a file must be left untouched before it is taken.
        after_pull: ``archive`` (move into ``archive_dir``) or ``delete``.
        archive_dir: Where taken files go when ``after_pull`` is ``archive``.
        max_file_size: Largest file taken, in bytes; larger ones are reported.
    """

    inbox: str
    outbox: str
    pattern: str = "*.xml"
    min_age: float = 30.0
    after_pull: str = "archive"
    archive_dir: str | None = None
    max_file_size: int = 50 * 1024 * 1024

    KEYS = frozenset(
        {
            "inbox",
            "outbox",
            "pattern",
            "min_age",
            "after_pull",
            "archive_dir",
            "max_file_size",
        }
    )

    @classmethod
    def read(cls, reader: ConfigReader) -> InboxRules:
        """Build the rules from a `ConfigReader`."""
        after_pull = reader.choice("after_pull", "archive", ("archive", "delete"))
        archive_dir = reader.optional_text("archive_dir")
        if after_pull == "archive" and archive_dir is None:
            raise ConfigError(
                f"connector {reader.name!r}: transport key 'archive_dir' is required "
                "when 'after_pull' is 'archive' (or set 'after_pull: delete')"
            )
        return cls(
            inbox=reader.text("inbox"),
            outbox=reader.text("outbox"),
            pattern=reader.text("pattern", "*.xml"),
            min_age=reader.number("min_age", 30.0),
            after_pull=after_pull,
            archive_dir=archive_dir,
            max_file_size=reader.integer("max_file_size", 50 * 1024 * 1024, minimum=1),
        )


@dataclass(frozen=True)
class Peer:
    """Who is at the other end, for messages and logs.

    Attributes:
        name: The connector's name.
        country: ISO 3166-1 alpha-2 code of the country.
    """

    name: str
    country: str

    def __str__(self) -> str:
        return f"{self.country}/{self.name}"


def peer_from(name: str, country: str) -> Peer:
    """Validate a connector name and country code into a `Peer`."""
    if not name or not isinstance(name, str):
        raise ConfigError("a connector needs a non-empty name")
    if not (isinstance(country, str) and re.fullmatch(r"[A-Z]{2}", country)):
        raise ConfigError(
            f"connector {name!r}: country must be an ISO 3166-1 alpha-2 code such "
            f"as 'FR', not {country!r}"
        )
    return Peer(name=name, country=country)


__all__ = [
    "MAX_NAME_BYTES",
    "TEMPORARY_SUFFIXES",
    "ConfigReader",
    "Fetched",
    "InboxRules",
    "OutboundMessage",
    "Peer",
    "PushResult",
    "RemoteFile",
    "StabilityFilter",
    "Transport",
    "is_temporary_name",
    "name_problem",
    "peer_from",
]
