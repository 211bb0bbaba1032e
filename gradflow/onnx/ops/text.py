"""Text features: TfIdfVectorizer over integer token ids."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.registry import Kernel, register


@register("TfIdfVectorizer", since=13)
def tfidf_vectorizer(ctx: NodeContext) -> Kernel:
    # Counts, per row of token ids, the pool's n-grams of min_gram_length..max_gram_length
    # tokens, their tokens up to max_skip_count apart (unigrams counted once), into the columns
    # ngram_indexes gives them; then TF (counts), IDF (weight where present) or TFIDF.
    if ctx.attr("pool_strings"):
        raise ctx.unsupported("TfIdfVectorizer over strings")
    pool = [int(v) for v in ctx.attr("pool_int64s") or ()]
    starts = list(ctx.attr("ngram_counts") or ())
    columns = list(ctx.attr("ngram_indexes") or ())
    lowest, highest = int(ctx.attr("min_gram_length")), int(ctx.attr("max_gram_length"))
    skips = int(ctx.attr("max_skip_count"))
    mode = ctx.attr("mode")
    weights = list(ctx.attr("weights") or ())
    width = max(columns) + 1
    # n-gram -> output column; ids run over the whole pool, in order, sizes 1, 2, ...
    grams: dict[tuple[int, ...], int] = {}
    gram_id = 0
    for size, start in enumerate(starts, 1):
        end = starts[size] if size < len(starts) else len(pool)
        for at in range(start, end, size):
            if lowest <= size <= highest:
                grams[tuple(pool[at : at + size])] = columns[gram_id]
            gram_id += 1

    def count(row: list[int]) -> list[float]:
        counts = [0.0] * width
        for size in range(lowest, highest + 1):
            for distance in range(1, (1 if size == 1 else skips + 1) + 1):
                for start in range(len(row) - (size - 1) * distance):
                    column = grams.get(tuple(row[start : start + size * distance : distance]))
                    if column is not None:
                        counts[column] += 1
        return counts

    def run(x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(1, -1) if x.dim() <= 1 else x
        counts = torch.tensor([count(r) for r in rows.tolist()], dtype=torch.float32)
        if mode == "IDF":
            present = (counts > 0).float()
            counts = present * torch.tensor(weights) if weights else present
        elif mode == "TFIDF" and weights:
            counts = counts * torch.tensor(weights)
        counts = counts.to(x.device)
        return counts[0] if x.dim() <= 1 else counts

    return run
