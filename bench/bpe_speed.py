"""BPE training and encoding speed.

    python -m bench.bpe_speed

Training: vocab 1000 (743 merges + <|endoftext|>) on the-verdict repeated 10 times, the
incremental trainer of ch02_text.bpe vs the naive recount-every-merge reference, same run;
both must learn the same merges. Encoding: our GPT-2 BPE (pure Python) vs tiktoken (Rust).
"""

from __future__ import annotations

import argparse
import time

from tests.bpe_naive import naive_train_merges  # the tests' oracle: the plain algorithm
from bench.timing import machine_line, median_seconds
from ch02_text.bpe import BPETokenizer, train_merges
from ch02_text.data_files import find_data_file, read_data_text
from ch02_text.tokenizers import gpt2_tokenizer


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.bpe_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=10, help="copies of the-verdict to train on (10)")
    p.add_argument("--vocab-size", type=int, default=1000)
    args = p.parse_args(argv)

    text = read_data_text("the-verdict.txt")
    corpus = "\n".join([text] * args.repeat)
    chunks = BPETokenizer().chunks(corpus)
    n_merges = args.vocab_size - 256 - 1
    print(f"machine: {machine_line()}")
    print(f"training: {len(corpus):,} characters, {len(chunks):,} chunks, {n_merges} merges")
    start = time.perf_counter()
    fast = train_merges(chunks, n_merges)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    naive = naive_train_merges(chunks, n_merges)
    t_naive = time.perf_counter() - start
    print(f"  incremental  {t_fast:8.2f} s")
    print(f"  naive        {t_naive:8.2f} s")
    print(f"  speed-up     {t_naive / t_fast:8.1f}x   (same merges: {fast == naive})")

    ours = BPETokenizer.from_gpt2(find_data_file("gpt2/vocab.bpe"), find_data_file("gpt2/encoder.json"))
    ref = gpt2_tokenizer()

    def fresh_encode():
        ours._cache.clear()  # measure the cold cost, not a cache hit
        return ours.encode(corpus)

    class NoCache(dict):
        def get(self, key, default=None):
            return default

        def __setitem__(self, key, value):
            pass

    def uncached_encode():
        ours._cache = NoCache()
        try:
            return ours.encode(corpus)
        finally:
            ours._cache = {}

    t_ours = median_seconds(fresh_encode, iters=3)
    t_nocache = median_seconds(uncached_encode, iters=1, warmup=0)
    t_ref = median_seconds(lambda: ref.encode(corpus), iters=3)
    n_tokens = len(ref.encode(corpus))
    assert ours.encode(corpus) == ref.encode(corpus)
    print(f"encoding the same corpus, {n_tokens:,} GPT-2 tokens (identical ids):")
    print(f"  ours, piece cache (cleared per run)  {n_tokens / t_ours / 1e3:8.1f}k tokens/s")
    print(f"  ours, no cache                       {n_tokens / t_nocache / 1e3:8.1f}k tokens/s")
    print(f"  tiktoken (Rust)                      {n_tokens / t_ref / 1e3:8.1f}k tokens/s   "
          f"({t_ours / t_ref:.1f}x / {t_nocache / t_ref:.1f}x faster than ours)")
    return {"train_speedup": t_naive / t_fast, "encode_ratio": t_ours / t_ref}


if __name__ == "__main__":
    main()
