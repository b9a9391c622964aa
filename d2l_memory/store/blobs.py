"""File store for adapters larger than the inline threshold.

Blobs are written atomically (temporary file, fsync, rename) and addressed by a
URI relative to the blob directory, ``blob://<shard>/<adapter id>.safetensors``,
so the directory can be moved together with the database.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError

log = logging.getLogger(__name__)

SCHEME = "blob://"
SUFFIX = ".safetensors"
_URI_RE = re.compile(r"^blob://([0-9a-f]{2})/([0-9a-f]{32})\.safetensors$")


class BlobStore:
    """Adapter files under one root directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def uri_for(self, adapter_id: str) -> str:
        """The URI under which the blob of ``adapter_id`` (a 32-hex id) is stored."""
        uri = f"{SCHEME}{adapter_id[:2]}/{adapter_id}{SUFFIX}"
        if not _URI_RE.match(uri):
            raise StoreError(f"invalid adapter id {adapter_id!r} for a blob name. Fix: use uuid4().hex ids")
        return uri

    def path(self, uri: str) -> Path:
        """The file path of a blob URI (rejects anything that could escape the root)."""
        m = _URI_RE.match(uri)
        if not m:
            raise StoreError(
                f"invalid blob_uri {uri!r}: expected 'blob://<2 hex>/<32 hex>.safetensors'. "
                f"Fix: the database row is damaged; delete and purge the memory"
            )
        return self.root / m.group(1) / f"{m.group(2)}{SUFFIX}"

    def write(self, adapter_id: str, data: bytes) -> str:
        """Write ``data`` atomically and durably; return its URI."""
        uri = self.uri_for(adapter_id)
        final = self.path(uri)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        log.debug("wrote blob %s (%d bytes)", uri, len(data))
        return uri

    def read(self, uri: str) -> bytes:
        """The bytes of a blob; raises FileNotFoundError when the file is missing."""
        return self.path(uri).read_bytes()

    def delete(self, uri: str) -> bool:
        """Remove a blob file; True if it existed. Never raises for a missing file."""
        try:
            self.path(uri).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:  # e.g. permissions: leave it for orphan collection
            log.warning("could not delete blob %s: %s", uri, exc)
            return False

    def iter_uris(self, older_than_seconds: float = 0.0) -> Iterator[str]:
        """URIs of the blob files modified more than ``older_than_seconds`` ago (temporary files skipped)."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - older_than_seconds
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for f in shard.iterdir():
                uri = f"{SCHEME}{shard.name}/{f.name}"
                if not _URI_RE.match(uri):
                    continue
                try:
                    if f.stat().st_mtime <= cutoff:
                        yield uri
                except FileNotFoundError:
                    continue

    def remove_stale_temp_files(self, older_than_seconds: float) -> int:
        """Delete temporary files left by writers that crashed mid-write."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for f in self.root.glob(f"*/.tmp-*{SUFFIX}"):
            try:
                if f.stat().st_mtime <= cutoff:
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
