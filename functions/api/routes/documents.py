"""`POST /documents`: the example of offload inside an application route (the hybrid style).

One request stores a document, fires an inline side effect (an audit event, after the
response) and submits a durable embedding job (gpu lane), then answers at once with both
job ids. Application routes use `JobsDep` exactly like this.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from functions.api.schemas import error_responses
from offload.aws import clients
from offload.fastapi import JobsDep, OffloadDep
from tasks.text import CHUNK_CHARS, chunk

router = APIRouter(tags=["documents"])

MAX_CHUNKS = 32  # what one `embeddings.embed` job takes


class Document(BaseModel):
    """A document to store and index."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=CHUNK_CHARS * MAX_CHUNKS)


class DocumentJobs(BaseModel):
    """The jobs a document starts."""

    audit: str
    embedding: str


class DocumentAccepted(BaseModel):
    """The stored document and the jobs that work on it."""

    document_id: str
    uri: str
    chunks: int
    jobs: DocumentJobs


@router.post(
    "/documents",
    status_code=202,
    response_model=DocumentAccepted,
    responses=error_responses(409, 429),
)
async def ingest(
    doc: Document, jobs: JobsDep, offload: OffloadDep, response: Response
) -> DocumentAccepted:
    """Store a document, record an audit event after the response, and embed it on a GPU."""
    document_id = str(uuid.uuid4())
    chunks = chunk(doc.text)
    if len(chunks) > MAX_CHUNKS:
        # Only reachable with very short paragraphs; the length limit covers the rest.
        raise _too_long(len(chunks))
    settings = offload.settings
    bucket, key = settings.bucket_name(), f"documents/{document_id}.json"
    body = json.dumps({"title": doc.title, "text": doc.text, "chunks": chunks}).encode()
    with clients.unavailable_as("S3"):
        await asyncio.to_thread(
            clients.s3(settings).put_object,
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
        )
    audit = await jobs.submit(
        "audit.record",
        {"event": "document.created", "subject": document_id, "data": {"title": doc.title}},
    )
    embedding = await jobs.submit("embeddings.embed", {"texts": chunks})
    response.headers["Location"] = f"/jobs/{embedding.job_id}"
    return DocumentAccepted(
        document_id=document_id,
        uri=f"s3://{bucket}/{key}",
        chunks=len(chunks),
        jobs=DocumentJobs(audit=audit.job_id, embedding=embedding.job_id),
    )


def _too_long(chunks: int) -> Exception:
    from offload.errors import InvalidPayload

    return InvalidPayload(
        "documents",
        [
            {
                "field": "text",
                "message": f"{chunks} chunks; at most {MAX_CHUNKS} fit one embedding job",
            }
        ],
    )
