"""Every tokenizer of the project does what ch02_text/tokenizer_protocol.py says the project needs of one, and
tokenizer_choice asks nothing more of it: each stored form reads back (tiktoken's GPT-2 encoding by name)."""

import pytest

from ch02_text.bpe import BPETokenizer
from ch02_text.char_tokenizer import CharTokenizer
from ch02_text.tokenizer_choice import STORED_FORMATS, describe, token_bytes, tokenizer_from_dict, tokenizer_to_dict
from ch02_text.tokenizer_protocol import StoredTokenizer, Tokenizer
from ch02_text.tokenizers import END_OF_TEXT, SimpleTokenizerV2, build_vocab, split_text

TEXT = "to be, or not to be: café 🙂"


def hf_tokenizer():
    """A byte-level BPE tokenizer.json trained here, with an end-of-text token, in an ``HFTokenizer``."""
    tokenizers = pytest.importorskip("tokenizers")
    from ch02_text.hf_tokenizer import HFTokenizer

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.train_from_iterator([TEXT] * 5, tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=[END_OF_TEXT], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    return HFTokenizer(tok.to_str(), {"eos_token": END_OF_TEXT})


def bpe_tokenizer():
    tok = BPETokenizer()
    tok.train(TEXT * 3, vocab_size=256 + 10 + 1)
    return tok


OWN = {"char": lambda: CharTokenizer.from_text(TEXT), "bpe": bpe_tokenizer, "hf": hf_tokenizer}


def check_tokenizer(tok):
    """What the project calls on any tokenizer, by what it must give."""
    assert isinstance(tok, Tokenizer)
    ids = tok.encode(TEXT + END_OF_TEXT, allowed_special="all")
    assert tok.decode(ids) == TEXT + END_OF_TEXT and ids[-1] == tok.eot_token and max(ids) < tok.n_vocab
    assert tok.encode_ordinary(TEXT) == tok.encode(TEXT)
    assert b"".join(token_bytes(tok, i) for i in tok.encode(TEXT)) == TEXT.encode("utf-8")


@pytest.mark.parametrize("name", list(OWN))
def test_own_tokenizers_are_stored_tokenizers(name):
    tok = OWN[name]()
    check_tokenizer(tok)
    assert isinstance(tok, StoredTokenizer) and STORED_FORMATS[tok.format] is type(tok)
    stored = tokenizer_to_dict(tok)
    assert stored["format"] == tok.format
    again = tokenizer_from_dict(stored)
    assert type(again) is type(tok) and again.encode(TEXT) == tok.encode(TEXT) and describe(again) == tok.describe()


def test_gpt2_is_a_tokenizer_stored_by_name(gpt2_tok):
    check_tokenizer(gpt2_tok)
    assert not isinstance(gpt2_tok, StoredTokenizer)  # tiktoken's class: stored and described by name
    assert tokenizer_to_dict(gpt2_tok) == {"format": "gpt2"} and describe(gpt2_tok) == "gpt2: 50,257 ids"


def test_the_books_word_tokenizer_is_not_one():
    """Listing 2.4's tokenizer has no end-of-text id and no vocabulary size: the checks can tell it apart."""
    book = SimpleTokenizerV2(build_vocab(split_text(TEXT), special_tokens=True))
    assert not isinstance(book, Tokenizer)
    with pytest.raises(TypeError, match="not a tokenizer of this project: SimpleTokenizerV2"):
        tokenizer_to_dict(book)
