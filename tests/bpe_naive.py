"""Reference BPE training, for tests and the benchmark only: recount every pair after each merge.

This is the textbook algorithm (as in minbpe's BasicTokenizer): simple and slow. The
product's ``ch02_text.bpe.train_merges`` must learn exactly the same merges.
"""

from __future__ import annotations

from ch02_text.bpe import merge_ids, pair_counts


def naive_train_merges(chunks, n_merges):
    words = [list(chunk.encode("utf-8")) for chunk in chunks]
    merges = []
    for _ in range(n_merges):
        counts = pair_counts((w, 1) for w in words)
        if not counts:
            break
        # most frequent pair; ties go to the smallest pair of ids (same rule as the fast trainer)
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        new_id = 256 + len(merges)
        merges.append(pair)
        words = [merge_ids(w, pair, new_id) for w in words]
    return merges
