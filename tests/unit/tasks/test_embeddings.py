"""`embeddings.embed` gives unit-length all-MiniLM-L6-v2 vectors that rank meaning sensibly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import pytest
from pydantic import ValidationError

from offload import JobContext
from tasks.embeddings import DIM, Embed, embed, embed_texts, load_model

Embedder = Callable[[list[str]], list[list[float]]]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """`embed_texts` with the model already loaded: loading takes seconds, so once per module."""
    load_model()
    return embed_texts


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_vectors_are_384_dim_and_unit_length(embedder: Embedder) -> None:
    vectors = embedder(["A man is playing a guitar.", "x", "Ünïcödé and 汉字 too."])
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == DIM == 384
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: Embedder) -> None:
    guitar, paraphrase, stocks = embedder(
        [
            "A man is playing a guitar.",
            "Someone plays the guitar.",
            "The stock market fell sharply today.",
        ]
    )
    assert cosine(guitar, paraphrase) > cosine(guitar, stocks) + 0.3


def test_the_same_text_gives_the_same_vector(embedder: Embedder) -> None:
    first, second = embedder(["Deterministic, please.", "Deterministic, please."])
    assert first == second
    # A batch of another size may take another BLAS kernel: equal to rounding, not bitwise
    # (seen here while the machine was busy: one component off by 1e-7).
    assert embedder(["Deterministic, please."])[0] == pytest.approx(first, abs=1e-6)


def test_the_task_reports_model_and_dimension(embedder: Embedder) -> None:
    (result,) = embed([Embed(texts=["one", "two"])], [cast(JobContext, None)])
    assert result.model == "all-MiniLM-L6-v2"
    assert result.dim == 384
    assert result.vectors == embedder(["one", "two"])


JOBS = [
    ["A man is playing a guitar."],
    ["Short.", "A considerably longer sentence, padded against the short one in a batch."],
    ["Ünïcödé and 汉字 too.", "x", "The stock market fell sharply today."],
    ["Deterministic, please."] * 4,
]


def test_a_batch_of_jobs_is_one_forward_pass_with_the_one_at_a_time_results(
    embedder: Embedder,
) -> None:
    from tasks import embeddings

    payloads = [Embed(texts=texts) for texts in JOBS]
    nobody = [cast(JobContext, None)] * len(payloads)
    before = embeddings.forward_passes
    together = embed(payloads, nobody)
    assert embeddings.forward_passes - before == 1  # four jobs, one pass
    before = embeddings.forward_passes
    alone = [embed([payload], nobody[:1])[0] for payload in payloads]
    assert embeddings.forward_passes - before == len(payloads)
    for batched, single in zip(together, alone, strict=True):
        assert len(batched.vectors) == len(single.vectors)
        for a, b in zip(batched.vectors, single.vectors, strict=True):
            # Padding beside longer texts changes float rounding only (masked attention).
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


@pytest.mark.parametrize(
    "texts",
    [["text"] * 33, [], [""], ["x" * 8001]],
    ids=["33 texts", "no texts", "empty text", "8001 characters"],
)
def test_out_of_bounds_payloads_are_refused(texts: list[Any]) -> None:
    with pytest.raises(ValidationError):
        Embed(texts=texts)


def test_thirty_two_texts_are_accepted() -> None:
    assert len(Embed(texts=["text"] * 32).texts) == 32
