import re

import pytest

from ch02_text.tokenizers import (
    SimpleTokenizerV1, SimpleTokenizerV2, UnknownTokenError, build_vocab, split_text,
)

PASSAGE = """"It's the last he painted, you know,"
           Mrs. Gisburn said with pardonable pride."""


@pytest.fixture(scope="module")
def preprocessed(verdict_text):
    return split_text(verdict_text)


def test_book_counts(verdict_text, preprocessed):
    assert len(verdict_text) == 20479
    assert len(preprocessed) == 4690
    assert preprocessed[:5] == ["I", "HAD", "always", "thought", "Jack"]
    assert len(build_vocab(preprocessed)) == 1130
    vocab = build_vocab(preprocessed, special_tokens=True)
    assert len(vocab) == 1132
    assert vocab["<|endoftext|>"] == 1130 and vocab["<|unk|>"] == 1131


def test_split_matches_book_regex():
    text = "Hello, world. Is this-- a test?"
    book = [i.strip() for i in re.split(r'([,.:;?_!"()\']|--|\s)', text) if i.strip()]
    assert split_text(text) == book == ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]


def test_v1_known_ids_and_round_trip(preprocessed):
    tok = SimpleTokenizerV1(build_vocab(preprocessed))
    ids = tok.encode(PASSAGE)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert tok.decode(ids) == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    assert tok.encode(tok.decode(ids)) == ids


def test_v1_unknown_word_error(preprocessed):
    tok = SimpleTokenizerV1(build_vocab(preprocessed))
    with pytest.raises(KeyError) as info:
        tok.encode("Hello, do you like tea?")
    assert isinstance(info.value, UnknownTokenError)
    assert info.value.word == "Hello"
    assert "'Hello'" in str(info.value) and "SimpleTokenizerV2" in str(info.value)


def test_v2_unknown_and_endoftext(preprocessed):
    tok = SimpleTokenizerV2(build_vocab(preprocessed, special_tokens=True))
    text = " <|endoftext|> ".join(("Hello, do you like tea?", "In the sunlit terraces of the palace."))
    ids = tok.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tok.decode(ids) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


def test_gpt2_known_ids(gpt2_tok, verdict_text):
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace."
    ids = gpt2_tok.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250,
                   8812, 2114, 1659, 617, 34680, 27271, 13]
    assert gpt2_tok.decode(ids) == text
    assert gpt2_tok.n_vocab == 50257 and gpt2_tok.eot_token == 50256
    assert len(gpt2_tok.encode(verdict_text)) == 5145


def test_gpt2_special_token_needs_allowed_special(gpt2_tok):
    with pytest.raises(ValueError):
        gpt2_tok.encode("a <|endoftext|> b")
    assert 50256 not in gpt2_tok.encode("a <|endoftext|> b", disallowed_special=())
    assert gpt2_tok.encode("a <|endoftext|> b", allowed_special={"<|endoftext|>"}) == [64, 220, 50256, 275]


def test_offline_gpt2_equals_tiktoken_reference(gpt2_tok, verdict_text):
    """Same ids as tiktoken's own gpt2 recipe built from the same local files."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext import openai_public

    from ch02_text.data_files import find_data_file

    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        str(find_data_file("gpt2/vocab.bpe")), str(find_data_file("gpt2/encoder.json")),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    ref = tiktoken.Encoding(name="gpt2-ref", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
    sample = verdict_text + " Ünïcödé façade, naïve café — 你好 мир 🙂 <|endoftext|>"
    assert gpt2_tok.encode(sample, allowed_special="all") == ref.encode(sample, allowed_special="all")
