"""File-drop transport: a local or mounted folder shared with a national system.

Same rules as SFTP: only ready files are taken (see `transports.base`), pushes
are written under ``.tmp-<id>`` and renamed into the outbox, and inbox files
are archived or deleted only when the hub says so.

Remote names are validated and opened relative to the inbox folder with
``O_NOFOLLOW``; symbolic links and anything that is not a regular file are
never listed.

Limitations: the rename into the outbox is atomic only when the temporary and
final names are on the same file system, which holds because both are in the
outbox folder. Network file systems (NFS, SMB) may show a file's size before
its content; rely on ``min_age`` there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2es_hub.errors import (
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from i2es_hub.transports.base import (
    ConfigReader,
    Fetched,
    InboxRules,
    OutboundMessage,
    Peer,
    PushResult,
    RemoteFile,
    StabilityFilter,
    name_problem,
    peer_from,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileDropConfig:
    """Settings of one file-drop connector.

    Attributes:
        peer: Connector name and country.
        rules: Inbox, outbox, archive and readiness rules; folders are local
            paths (absolute, or relative to the working directory).
    """

    peer: Peer
    rules: InboxRules

    KEYS = InboxRules.KEYS

    @classmethod
    def from_mapping(
        cls, name: str, country: str, data: Mapping[str, Any]
    ) -> FileDropConfig:
        """Build the settings from a connector file's ``transport`` mapping.

        Raises:
            ConfigError: A key is unknown, missing or invalid; the message names it.
        """
        reader = ConfigReader(name, data, set(cls.KEYS))
        return cls(peer=peer_from(name, country), rules=InboxRules.read(reader))


class FileDropTransport:
    """An open session on a drop folder. Obtain it with `open_filedrop`."""

    def __init__(self, config: FileDropConfig) -> None:
        self.config = config
        self._inbox = Path(config.rules.inbox)
        self._outbox = Path(config.rules.outbox)
        self._filter = StabilityFilter(config.rules.pattern, config.rules.min_age)

    def _failed(self, action: str, path: Path, exc: OSError) -> TransportError:
        """Translate an OS error about a folder into the hub's error."""
        message = (
            f"file drop {self.config.peer}: {action} {path} failed "
            f"({exc.strerror or exc})"
        )
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM):
            return PermanentTransportError(
                f"{message}. Check the folder in the connector file and its rights."
            )
        return TransientTransportError(
            f"{message}. The hub will retry; if this persists check the mount."
        )

    def list_ready(self, limit: int | None = None) -> list[RemoteFile]:
        """Return the ready inbox files, oldest first (see `transports.base`).

        Raises:
            PermanentTransportError: The inbox folder is missing or unreadable.
            TransientTransportError: The folder could not be read for now.
        """
        entries = []
        try:
            with os.scandir(self._inbox) as listing:
                for entry in listing:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        entries.append(
                            RemoteFile(entry.name, info.st_size, info.st_mtime, "")
                        )
        except OSError as exc:
            raise self._failed("listing", self._inbox, exc) from exc

        ready = self._filter.ready(entries, time.time())
        if limit is not None:
            ready = ready[:limit]
        logger.info(
            "file drop %s: %d of %d files in %s ready",
            self.config.peer,
            len(ready),
            len(entries),
            self._inbox,
        )
        return ready

    def fetch(self, files: Iterable[RemoteFile]) -> Iterator[Fetched]:
        """Yield the bytes of each file, in order, one `Fetched` per file.

        Raises:
            TransientTransportError: The folder became unreachable.
        """
        taken = refused = size = 0
        for file in files:
            result = self._read(file)
            if result.ok:
                taken += 1
                size += len(result.data)
            else:
                refused += 1
            yield result
        logger.info(
            "file drop %s: fetched %d files (%d bytes), %d refused, from %s",
            self.config.peer,
            taken,
            size,
            refused,
            self._inbox,
        )

    def _read(self, file: RemoteFile) -> Fetched:
        peer, cap = self.config.peer, self.config.rules.max_file_size
        problem = name_problem(file.name)
        if problem is not None:
            return Fetched(
                file,
                error=PermanentTransportError(
                    f"file drop {peer}: refused inbox entry {file.name!r} in "
                    f"{self._inbox}: {problem}. It was left in place; ask the "
                    "country to rename or remove it."
                ),
            )
        path = self._inbox / file.name
        too_big = PermanentTransportError(
            f"file drop {peer}: {path} is over the {cap}-byte limit; it was left in "
            "place. Raise 'max_file_size' in the connector file or ask the country "
            "to split it."
        )
        if file.size > cap:
            return Fetched(file, error=too_big)

        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(cap + 1)
        except FileNotFoundError:
            return Fetched(
                file,
                error=TransientTransportError(
                    f"file drop {peer}: {path} vanished after it was listed; "
                    "another process may have taken it."
                ),
            )
        except OSError as exc:
            error = self._failed("reading", path, exc)
            if error.retriable:
                raise error from exc
            return Fetched(file, error=error)

        if len(data) > cap:
            return Fetched(file, error=too_big)
        if len(data) != file.size:
            return Fetched(
                file,
                error=TransientTransportError(
                    f"file drop {peer}: {path} changed size since it was listed "
                    f"({file.size} -> {len(data)} bytes); it will be taken later."
                ),
            )
        return Fetched(file, data)

    def archive(self, files: Iterable[RemoteFile]) -> int:
        """Move committed files to the archive folder, or delete them.

        Files already gone (a repeat after a crash) are skipped.

        Returns:
            How many files were moved or deleted.

        Raises:
            PermanentTransportError: The archive folder is missing or read-only.
        """
        rules = self.config.rules
        done = total = 0
        for file in files:
            if name_problem(file.name) is not None:
                continue
            total += 1
            source = self._inbox / file.name
            try:
                if rules.after_pull == "delete" or rules.archive_dir is None:
                    source.unlink()
                else:
                    target = Path(rules.archive_dir) / file.name
                    if target.exists():
                        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                        target = target.with_name(
                            f"{file.name}.{stamp}.{time.monotonic_ns()}"
                        )
                    os.rename(source, target)
                done += 1
            except FileNotFoundError as exc:
                if source.exists():  # so it is the archive folder that is missing
                    archive = Path(str(rules.archive_dir))
                    raise self._failed("moving to", archive, exc) from exc
                # Already gone: archived by an earlier run that crashed after it.
            except OSError as exc:
                raise self._failed("archiving", source, exc) from exc
        logger.info(
            "file drop %s: %s %d of %d files from %s",
            self.config.peer,
            "deleted" if rules.after_pull == "delete" else "archived",
            done,
            total,
            self._inbox,
        )
        return done

    def push(self, messages: Sequence[OutboundMessage]) -> list[PushResult]:
        """Write each message under ``.tmp-<id>``, fsync, then rename it into place.

        Raises:
            TransientTransportError: The folder could not be written for now.
        """
        results = []
        for message in messages:
            temporary = self._outbox / message.temporary_name
            final = self._outbox / message.remote_name
            try:
                with open(temporary, "wb") as handle:
                    handle.write(message.data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, final)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                error = self._failed("writing", final, exc)
                if error.retriable:
                    raise error from exc
                results.append(PushResult(message.message_id, str(final), error))
                continue
            results.append(PushResult(message.message_id, str(final)))

        failed = sum(1 for result in results if not result.ok)
        logger.info(
            "file drop %s: pushed %d messages, %d failed, to %s",
            self.config.peer,
            len(results) - failed,
            failed,
            self._outbox,
        )
        return results


@contextlib.contextmanager
def open_filedrop(config: FileDropConfig) -> Iterator[FileDropTransport]:
    """Yield a session on the drop folders named in ``config``.

    Raises:
        PermanentTransportError: The inbox or outbox folder does not exist.
    """
    for key, folder in (("inbox", config.rules.inbox), ("outbox", config.rules.outbox)):
        if not Path(folder).is_dir():
            raise PermanentTransportError(
                f"file drop {config.peer}: {key} folder {folder} does not exist or "
                f"is not mounted. Create it or fix '{key}' in the connector file."
            )
    yield FileDropTransport(config)


__all__ = ["FileDropConfig", "FileDropTransport", "open_filedrop"]
