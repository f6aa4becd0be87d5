"""A vector index in S3: text chunks and their unit vectors, searched by cosine similarity.

Layout under the results bucket, per caller (hashed: a caller id may hold any character)
and index name:

    indexes/<caller hash>/<name>/manifest.json      name, model, dim, chunks, vectors key
    indexes/<caller hash>/<name>/<job id>.f32       the vectors, float32 little-endian, row-major

The vectors are written first under the building job's id and the manifest last, so a
reader never pairs a manifest with vectors of another build; re-indexing a name swaps the
manifest in one write. Vectors are plain float32 (no numpy format): the API can read them.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from offload import PermanentFailure, Settings
from offload.aws import clients

PREFIX = "indexes/"


class IndexNotFound(PermanentFailure):
    """No index of that name for this caller: no retry will make one."""


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, as indexed."""

    doc_id: str
    n: int  # its place in the document, from 0
    text: str


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, and how close it is to the query (cosine, -1 to 1)."""

    chunk: Chunk
    score: float


@dataclass
class VectorIndex:
    """An index as loaded: its chunks and their vectors (one row of `dim` floats each)."""

    name: str
    model: str
    dim: int
    chunks: list[Chunk]
    vectors: list[list[float]]

    def search(self, query: list[float], k: int) -> list[Hit]:
        """The `k` chunks closest to the unit vector `query`, closest first."""
        if len(query) != self.dim:
            raise ValueError(f"query has {len(query)} dimensions; the index has {self.dim}")
        scores = _dot_all(self.vectors, query)
        best = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:k]
        return [Hit(self.chunks[i], scores[i]) for i in best]


def index_prefix(caller: str, name: str) -> str:
    """Where a caller's index lives in the results bucket."""
    owner = hashlib.sha256(caller.encode()).hexdigest()[:24]
    return f"{PREFIX}{owner}/{name}/"


def save(
    settings: Settings,
    caller: str,
    name: str,
    model: str,
    chunks: list[Chunk],
    vectors: list[list[float]],
    build_id: str,
) -> str:
    """Store an index (replacing one of the same name); its manifest's `s3://` URI."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    dim = len(vectors[0]) if vectors else 0
    prefix = index_prefix(caller, name)
    vectors_key = f"{prefix}{build_id}.f32"
    blob = b"".join(struct.pack(f"<{dim}f", *row) for row in vectors)
    manifest = {
        "name": name,
        "model": model,
        "dim": dim,
        "count": len(chunks),
        "vectors_key": vectors_key,
        "built_by": build_id,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "chunks": [asdict(chunk) for chunk in chunks],
    }
    s3, bucket = clients.s3(settings), settings.bucket_name()
    with clients.unavailable_as("S3"):
        s3.put_object(Bucket=bucket, Key=vectors_key, Body=blob)
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}manifest.json",
            Body=json.dumps(manifest).encode(),
            ContentType="application/json",
        )
    return f"s3://{bucket}/{prefix}manifest.json"


def load(settings: Settings, caller: str, name: str) -> VectorIndex:
    """The caller's index `name`; `IndexNotFound` when they have none of that name."""
    s3, bucket = clients.s3(settings), settings.bucket_name()
    found = clients.read_object(settings, bucket, f"{index_prefix(caller, name)}manifest.json")
    if found is None:
        raise IndexNotFound(f"no index named {name!r}: build it with embeddings.index first")
    manifest = json.loads(found)
    dim, count = int(manifest["dim"]), int(manifest["count"])
    with clients.unavailable_as("S3"):
        blob = s3.get_object(Bucket=bucket, Key=manifest["vectors_key"])["Body"].read()
    if len(blob) != 4 * dim * count:
        raise ValueError(f"index {name!r}: {len(blob)} bytes of vectors for {count}x{dim}")
    flat = struct.unpack(f"<{dim * count}f", blob)
    vectors = [list(flat[i * dim : (i + 1) * dim]) for i in range(count)]
    chunks = [Chunk(**chunk) for chunk in manifest["chunks"]]
    return VectorIndex(name, str(manifest["model"]), dim, chunks, vectors)


def _dot_all(rows: list[list[float]], query: list[float]) -> list[float]:
    """Each row's dot product with `query` (cosine, for unit vectors); torch when present."""
    try:
        import torch
    except ImportError:  # the API has no torch: plain Python is fine for small indexes
        return [math.fsum(a * b for a, b in zip(row, query, strict=True)) for row in rows]
    if not rows:
        return []
    return [float(x) for x in torch.tensor(rows) @ torch.tensor(query)]
