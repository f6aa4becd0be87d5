"""Splitting text into chunks that an embedding model reads whole."""

from __future__ import annotations

CHUNK_CHARS = 1000


def chunk(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Paragraphs packed into chunks of at most `size` characters (long ones split)."""
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.split("\n\n")):
        while len(paragraph) > size:
            chunks.append(paragraph[:size])
            paragraph = paragraph[size:]
        if not paragraph:
            continue
        if current and len(current) + 2 + len(paragraph) > size:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return chunks
