"""Export one user's memories to a self-contained directory or tar archive, and import it back.

Layout (a directory, or the same files at the root of a tar archive)::

    manifest.json                       records, embeddings (base64 float32), lineage, history
    adapters/<memory id>.safetensors    the adapter bytes, verified by sha256 on both sides

Timestamps are ISO 8601 with microseconds and offset, so a round trip is exact.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import insert, select

from . import migrate, pgvector, queries
from . import validate as v
from .errors import CorruptAdapterError, EmbeddingDimMismatch, ImportExportError, UserNotFound
from .models import Adapter, Embedding, History, Lineage, Memory, User, new_id, utcnow
from .records import ImportReport

if TYPE_CHECKING:
    from .store import AdapterStore

log = logging.getLogger(__name__)

FORMAT = "d2l-memory-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ADAPTER_FILE = re.compile(r"^adapters/[0-9A-Za-z_-]{1,64}\.safetensors$")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def is_archive(path: Path) -> bool:
    return path.name.endswith(_TAR_SUFFIXES)


# ------------------------------------------------------------------------ export

def export_user(store: AdapterStore, user_id: str, dest: Path, *, include_deleted: bool = True) -> Path:
    """See :meth:`AdapterStore.export_user`."""
    now = utcnow()
    with store._snapshot() as s:
        user = s.get(User, user_id)
        if user is None:
            raise UserNotFound(user_id)
        where = Memory.user_id == user_id
        if not include_deleted:
            where = where & queries.live(now)
        rows = s.execute(
            select(Memory, Adapter).outerjoin(Adapter, Adapter.memory_id == Memory.id).where(where)
            .order_by(Memory.created_at, Memory.id)
        ).all()
        ids = {m.id for m, _ in rows}
        embs: dict[str, list[dict[str, Any]]] = {}
        for e in s.execute(select(Embedding).where(Embedding.user_id == user_id).order_by(Embedding.id)).scalars():
            if e.memory_id in ids:
                embs.setdefault(e.memory_id, []).append(
                    {"model": e.model, "dim": e.dim, "vector_b64": base64.b64encode(e.vector).decode("ascii")})
        lineage = [
            {"child_id": ln.child_id, "parent_id": ln.parent_id,
             "parent_adapter_sha256": ln.parent_adapter_sha256, "created_at": _iso(ln.created_at)}
            for ln in s.execute(select(Lineage).where(Lineage.user_id == user_id)
                                .order_by(Lineage.child_id, Lineage.parent_id)).scalars()
            if ln.child_id in ids
        ]
        history = [
            {"memory_id": h.memory_id, "event": h.event, "at": _iso(h.at), "old_metadata": h.old_metadata,
             "new_metadata": h.new_metadata, "details": h.details}
            for h in s.execute(select(History).where(History.user_id == user_id).order_by(History.id)).scalars()
        ]
        user_created = user.created_at

    files: dict[str, bytes] = {}
    memories = []
    for m, a in rows:
        rec: dict[str, Any] = {
            "id": m.id, "kind": m.kind, "title": m.title, "summary": m.summary, "text": m.source_text,
            "content_sha256": m.content_sha256, "metadata": m.meta, "created_at": _iso(m.created_at),
            "updated_at": _iso(m.updated_at), "expires_at": _iso(m.expires_at),
            "deleted_at": _iso(m.deleted_at), "adapter": None, "embeddings": embs.get(m.id, []),
        }
        if a is not None:
            name = f"adapters/{m.id}.safetensors"
            files[name] = store._verified_bytes(m.id, a.payload, a.blob_uri, a.size_bytes, a.sha256)
            rec["adapter"] = {
                "id": a.id, "rank": a.rank, "target_modules": a.target_modules, "dtype": a.dtype,
                "size_bytes": a.size_bytes, "sha256": a.sha256, "base_model": a.base_model,
                "hypernet_sha": a.hypernet_sha, "created_at": _iso(a.created_at), "file": name,
            }
        memories.append(rec)
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "schema_revision": migrate.head(),
        "exported_at": _iso(now), "user": {"id": user_id, "created_at": _iso(user_created)},
        "memories": memories, "lineage": lineage, "history": history,
    }
    blob = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")

    if is_archive(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        mode = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
        with tarfile.open(tmp, mode) as tar:
            for name, data in [(MANIFEST, blob), *files.items()]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = int(now.timestamp())
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(dest)
    else:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ImportExportError(f"export destination {dest} exists and is not an empty directory. "
                                    f"Fix: choose a new path, or a name ending in .tar / .tar.gz")
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent if dest.parent.exists() else None))
        try:
            (tmpdir / "adapters").mkdir()
            for name, data in files.items():
                (tmpdir / name).write_bytes(data)
            (tmpdir / MANIFEST).write_bytes(blob)
            if dest.exists():
                dest.rmdir()
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmpdir), str(dest))
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
    log.info("exported %d memories of %r to %s", len(memories), user_id, dest)
    return dest


# ------------------------------------------------------------------------ import

def _reader(src: Path) -> tuple[Callable[[str], bytes], Callable[[], None]]:
    """A function reading a named file of the export, and a close function."""
    if src.is_dir():
        def read_dir(name: str) -> bytes:
            path = src / name
            if not path.is_file():
                raise ImportExportError(f"{src}: {name} is missing. Fix: export again with export_user")
            return path.read_bytes()
        return read_dir, lambda: None
    if not src.is_file():
        raise ImportExportError(f"import source {src} does not exist. Fix: pass an export directory or archive")
    try:
        tar = tarfile.open(src, "r:*")
    except tarfile.TarError as exc:
        raise ImportExportError(f"{src} is not a tar archive ({exc}). Fix: pass an export directory or archive") from None

    def read_tar(name: str) -> bytes:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise ImportExportError(f"{src}: {name} is missing. Fix: export again with export_user") from None
        fh = tar.extractfile(member) if member.isfile() else None
        if fh is None:
            raise ImportExportError(f"{src}: {name} is not a regular file")
        return fh.read()
    return read_tar, tar.close


def import_user(store: AdapterStore, src: Path, *, user_id: str | None = None, new_ids: bool = False) -> ImportReport:
    """See :meth:`AdapterStore.import_user`."""
    read, close = _reader(src)
    try:
        try:
            manifest = json.loads(read(MANIFEST))
        except json.JSONDecodeError as exc:
            raise ImportExportError(f"{src}: manifest.json is not valid JSON ({exc})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise ImportExportError(
                f"{src}: format {manifest.get('format')!r} version {manifest.get('version')!r} is not "
                f"{FORMAT!r} version {FORMAT_VERSION}. Fix: export with this version of d2l-memory")
        mems = manifest["memories"]
        payloads: dict[str, bytes] = {}
        for m in mems:
            a = m.get("adapter")
            if a is None:
                continue
            if not _ADAPTER_FILE.match(a["file"]):
                raise ImportExportError(f"{src}: bad adapter file name {a['file']!r}")
            data = read(a["file"])
            if len(data) != a["size_bytes"] or v.sha256(data) != a["sha256"]:
                raise CorruptAdapterError(m["id"], f"export file {a['file']}",
                                          f"size {len(data)} / sha256 {v.sha256(data)} do not match the manifest "
                                          f"({a['size_bytes']} / {a['sha256']})")
            payloads[m["id"]] = data
    finally:
        close()

    source_user = manifest["user"]["id"]
    target = user_id or v.check_user_id(source_user)
    idmap = {m["id"]: (new_id() if new_ids else m["id"]) for m in mems}
    written: list[str] = []
    try:
        with store._write() as s:
            report, vectors = _import_in_txn(store, s, manifest, payloads, idmap, target, source_user, new_ids,
                                             written)
            if vectors and store._pgvector_schema is not None:
                pgvector.insert_rows(s.connection(), store._pgvector_schema, vectors)
    except BaseException:
        for uri in written:
            store._blobs.delete(uri)
        raise
    if store._cache is not None:
        store._cache.invalidate(target)
    log.info("imported %d memories into %r from %s (%d skipped)", report.imported, target, src, report.skipped)
    return report


def _import_in_txn(store: AdapterStore, s, manifest: dict[str, Any], payloads: dict[str, bytes],  # noqa: ANN001
                   idmap: dict[str, str], target: str, source_user: str, new_ids: bool, written: list[str]):  # noqa: ANN202
    now = utcnow()
    created = _dt(manifest["user"]["created_at"]) if target == source_user else now
    store._insert_user(s, target, created)
    _, version = store._bump(s, target)  # type: ignore[misc]
    mems = manifest["memories"]

    existing = {}
    for part in queries.chunks(list(idmap.values())):
        for mid, uid, sha in s.execute(select(Memory.id, Memory.user_id, Memory.content_sha256)
                                       .where(Memory.id.in_(part))):
            existing[mid] = (uid, sha)
    skip = set()
    for m in mems:
        new = idmap[m["id"]]
        if new in existing:
            if existing[new] == (target, m["content_sha256"]):
                skip.add(m["id"])
            else:
                raise ImportExportError(
                    f"memory id {new!r} already exists in this database with other content or another user. "
                    f"Fix: import with new_ids=True")
    dims: dict[str, int] = {}
    for m in mems:
        for e in m["embeddings"]:
            if dims.setdefault(e["model"], e["dim"]) != e["dim"]:
                raise EmbeddingDimMismatch(e["model"], dims[e["model"]], e["dim"])
    for model, dim in dims.items():
        have = s.execute(select(Embedding.dim).where(Embedding.user_id == target, Embedding.model == model)
                         .limit(1)).scalar_one_or_none()
        if have is not None and have != dim:
            raise EmbeddingDimMismatch(model, have, dim)

    rows: dict[str, list[dict[str, Any]]] = {"mem": [], "ad": [], "emb": [], "lin": [], "hist": []}
    vectors = []
    imported = []
    for m in mems:
        if m["id"] in skip:
            continue
        mid = idmap[m["id"]]
        imported.append(mid)
        rows["mem"].append(dict(
            id=mid, user_id=target, kind=v.check_kind(m["kind"]), title=m["title"], summary=m["summary"],
            source_text=m["text"], content_sha256=m["content_sha256"], meta=m["metadata"] or {},
            created_at=_dt(m["created_at"]), updated_at=_dt(m["updated_at"]), expires_at=_dt(m["expires_at"]),
            deleted_at=_dt(m["deleted_at"]), changed_version=version))
        a = m["adapter"]
        if a is not None:
            aid = new_id() if new_ids else a["id"]
            data = payloads[m["id"]]
            inline = len(data) <= store.config.inline_blob_max_bytes
            uri = None
            if not inline:
                uri = store._blobs.uri_for(aid)
                written.append(uri)
                store._blobs.write(aid, data)
            rows["ad"].append(dict(
                id=aid, memory_id=mid, rank=a["rank"], target_modules=a["target_modules"], dtype=a["dtype"],
                size_bytes=a["size_bytes"], sha256=a["sha256"], base_model=a["base_model"],
                hypernet_sha=a["hypernet_sha"], payload=data if inline else None, blob_uri=uri,
                created_at=_dt(a["created_at"])))
        for e in m["embeddings"]:
            vec = base64.b64decode(e["vector_b64"])
            if len(vec) != 4 * e["dim"]:
                raise ImportExportError(f"embedding of memory {m['id']!r} has {len(vec)} bytes, expected {4 * e['dim']}")
            rows["emb"].append(dict(memory_id=mid, user_id=target, model=e["model"], dim=e["dim"], vector=vec))
            vectors.append((mid, e["model"], target, np.frombuffer(vec, dtype="<f4")))
    imported_src = {k for k, val in idmap.items() if val in set(imported)}
    for ln in manifest["lineage"]:
        if ln["child_id"] in imported_src:
            rows["lin"].append(dict(
                child_id=idmap[ln["child_id"]], parent_id=idmap.get(ln["parent_id"], ln["parent_id"]),
                user_id=target, parent_adapter_sha256=ln["parent_adapter_sha256"], created_at=_dt(ln["created_at"])))
    for h in manifest["history"]:
        if h["memory_id"] in skip:
            continue
        rows["hist"].append(dict(
            user_id=target, memory_id=idmap.get(h["memory_id"], h["memory_id"]), event=h["event"],
            at=_dt(h["at"]), old_metadata=h["old_metadata"], new_metadata=h["new_metadata"], details=h["details"]))
    for model, key in ((Memory, "mem"), (Adapter, "ad"), (Embedding, "emb"), (Lineage, "lin"), (History, "hist")):
        if rows[key]:
            s.execute(insert(model), rows[key])
    report = ImportReport(user_id=target, imported=len(imported), skipped=len(skip), memory_ids=tuple(imported))
    return report, vectors
