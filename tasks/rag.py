"""`rag.answer`: retrieve from an index, rerank, then generate, as steps that retry apart.

Each step's output is kept under the job's S3 prefix (`steps/<name>.json`) as it completes.
A later attempt (after a failure, a lost worker or a replay) loads the steps already done
and goes on from the first one missing: a generation endpoint that fails does not make the
job retrieve and rerank again. Generation also retries transient failures within its step
(`tasks.llm`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from offload import JobContext, JobStatus, Payload, task
from tasks import llm, vector_index
from tasks.embeddings import IndexName, embed_texts, load_model

log = logging.getLogger(__name__)

# How much of the rerank score is the semantic (cosine) one; the rest is term overlap. No
# cross-encoder reranker installs offline here; blending the two already promotes passages
# that name the question's own terms.
SEMANTIC_WEIGHT = 0.7
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by do does for from how i in is it of on or so that the this to "
    "was what when where which who why with you your".split()
)

SYSTEM_PROMPT = (
    "Answer the question using only the numbered passages. Cite the passages you use like "
    "[1]. If the passages do not contain the answer, say that you do not know."
)


class Ask(Payload):
    """A question for an index built by embeddings.index."""

    index: IndexName
    question: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=8, ge=1, le=50, description="chunks retrieved by similarity")
    passages: int = Field(default=3, ge=1, le=10, description="reranked chunks the model reads")
    generation: Literal["endpoint", "sagemaker"] | None = Field(
        default=None,
        description="where the answer is written: the OpenAI-compatible endpoint or the "
        "sagemaker lane's llm.generate; default OFFLOAD_RAG_GENERATION",
    )


class Source(BaseModel):
    """A passage the answer was given, as cited: [n]."""

    n: int
    doc_id: str
    chunk: int
    score: float


class Answer(BaseModel):
    """The generated answer and the passages behind it."""

    answer: str
    sources: list[Source]
    model: str
    index: str


@task(
    "rag.answer",
    lane="gpu",
    payload=Ask,
    max_attempts=3,
    timeout_s=600,
    backoff_s=5,
    warmup=load_model,
)
def answer(payload: Ask, ctx: JobContext) -> Answer:
    """Answer a question from an index: retrieve, rerank, generate (each step kept)."""
    steps = Steps(ctx)
    hits = steps.run("retrieve", 10, lambda: retrieve(ctx, payload))
    ranked = steps.run("rerank", 30, lambda: rerank(payload.question, hits, payload.passages))
    where = payload.generation or ctx.settings.rag_generation
    generated = steps.run("generate", 90, lambda: generate(ctx, payload.question, ranked, where))
    sources = [
        Source(n=i + 1, doc_id=h["doc_id"], chunk=h["n"], score=round(h["score"], 4))
        for i, h in enumerate(ranked)
    ]
    return Answer(
        answer=generated["text"], sources=sources, model=generated["model"], index=payload.index
    )


class Steps:
    """Runs a job's steps once each across its attempts, keeping each output in S3."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    def run(self, name: str, percent: float, step: Callable[[], Any]) -> Any:
        """The output of step `name`: kept from an earlier attempt, or run now and kept."""
        kept = self.ctx.get_artifact(f"steps/{name}.json")
        if kept is not None:
            log.info("job %s: step %s done by an earlier attempt", self.ctx.job_id, name)
            return json.loads(kept)
        output = step()
        self.ctx.put_artifact(f"steps/{name}.json", json.dumps(output).encode(), "application/json")
        self.ctx.progress(percent, f"{name} done")
        return output


def retrieve(ctx: JobContext, payload: Ask) -> list[dict[str, Any]]:
    """The `top_k` chunks of the caller's index closest to the question."""
    index = vector_index.load(ctx.settings, ctx.caller, payload.index)
    (query,) = embed_texts([payload.question])
    return [
        {"doc_id": hit.chunk.doc_id, "n": hit.chunk.n, "text": hit.chunk.text, "score": hit.score}
        for hit in index.search(query, payload.top_k)
    ]


def rerank(question: str, hits: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The `keep` best hits by similarity blended with the question's terms they contain."""
    terms = _terms(question)

    def score(hit: dict[str, Any]) -> float:
        overlap = len(terms & _terms(hit["text"])) / len(terms) if terms else 0.0
        return SEMANTIC_WEIGHT * float(hit["score"]) + (1 - SEMANTIC_WEIGHT) * overlap

    ranked = sorted(hits, key=score, reverse=True)[:keep]
    return [{**hit, "score": score(hit)} for hit in ranked]


def generate(
    ctx: JobContext,
    question: str,
    passages: list[dict[str, Any]],
    where: Literal["endpoint", "sagemaker"] = "endpoint",
) -> dict[str, Any]:
    """The model's answer from the numbered passages, written `where`."""
    context = "\n\n".join(f"[{i + 1}] ({p['doc_id']}) {p['text']}" for i, p in enumerate(passages))
    user = f"Passages:\n{context}\n\nQuestion: {question}"
    if where == "sagemaker":
        return generate_on_sagemaker(ctx, f"{SYSTEM_PROMPT}\n\n{user}\n\nAnswer:")
    completion = llm.chat(
        ctx.settings,
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
    )
    return {"text": completion.text, "model": completion.model}


def generate_on_sagemaker(ctx: JobContext, prompt: str) -> dict[str, Any]:
    """The answer of an `llm.generate` job on the sagemaker lane. While it runs, this job
    waits without its worker (the gpu stays free for other jobs) and then runs again; the
    steps before are kept, so it comes straight back here and finds the job ended."""
    job = ctx.submit_job(
        "generate", "llm.generate", llm.Generate(prompt=prompt, max_new_tokens=512)
    )
    if not job.status.terminal:
        ctx.wait_for(job)
    if job.status is not JobStatus.SUCCESS:
        error = f"{job.error.type}: {job.error.message}" if job.error else job.status.value
        # This attempt fails; the next one submits a new generation job.
        raise llm.GenerationUnavailable(
            f"generation job {job.job_id} ended {job.status.value}: {error}"
        )
    endpoint = f"{ctx.settings.stack_name}-{llm.ENDPOINT}"
    return {"text": llm.generated_text(ctx.result_of(job)), "model": f"sagemaker:{endpoint}"}


def _terms(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}
