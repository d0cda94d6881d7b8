import json
import random

import pytest

from bpe_naive import naive_train_merges
from ch02_text.bpe import BPETokenizer, train_merges
from ch02_text.data_files import find_data_file
from ch02_text.tokenizers import SPECIAL_TOKENS


@pytest.fixture(scope="module")
def gpt2_bpe():
    return BPETokenizer.from_gpt2(find_data_file("gpt2/vocab.bpe"), find_data_file("gpt2/encoder.json"))


@pytest.fixture(scope="module")
def verdict_bpe(verdict_text):
    tok = BPETokenizer()
    tok.train(verdict_text, 1000)
    return tok


def random_strings(seed, n=300):
    rng = random.Random(seed)
    alphabets = ["abcdefghij XYZ", "àéîõüçñß", "αβγδ", "你好世界中文", "привет", "مرحبا", "🙂🚀👍🏽",
                 "0123456789", " \n\t.,!?'\"-", "\u200d\u0301"]
    for _ in range(n):
        yield "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randint(0, 40)))


def test_wikipedia_known_answer():
    tok = BPETokenizer()
    tok.train("aaabdaaabac", 256 + 3, special_tokens=(), pattern=None)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]  # Z=aa, Y=ab, X=ZY as on Wikipedia
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


@pytest.mark.parametrize("pattern_on", [True, False])
def test_incremental_training_equals_naive_reference(verdict_text, pattern_on):
    tok = BPETokenizer()
    if not pattern_on:
        tok.pattern = None
        tok._rebuild()
    text = verdict_text[:3000] if pattern_on else verdict_text[:600]
    chunks = tok.chunks(text)
    n = 150 if pattern_on else 60
    assert train_merges(chunks, n) == naive_train_merges(chunks, n)


def test_vocab_layout_and_specials(verdict_text):
    tok = BPETokenizer()
    tok.train(verdict_text[:5000], 300, special_tokens=SPECIAL_TOKENS["classic"])
    assert len(tok.merges) == 300 - 256 - 4 and tok.vocab_size == 300
    assert tok.special_tokens == {"<pad>": 296, "<unk>": 297, "<bos>": 298, "<eos>": 299}
    assert tok.encode("<bos>hi<eos>", allowed_special="all")[0] == 298


def test_vocab_size_too_small_names_minimum():
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer().train("hello", 256)
    with pytest.raises(ValueError, match="at least 260"):
        BPETokenizer().train("hello", 259, special_tokens=SPECIAL_TOKENS["classic"])


def test_special_token_in_text_needs_allowed_special(verdict_bpe):
    with pytest.raises(ValueError, match="allowed_special"):
        verdict_bpe.encode("the end <|endoftext|> the start")
    ids = verdict_bpe.encode("the end <|endoftext|> the start", allowed_special={"<|endoftext|>"})
    assert verdict_bpe.special_tokens["<|endoftext|>"] in ids
    as_text = verdict_bpe.encode("a <|endoftext|>", disallowed_special=())
    assert verdict_bpe.special_tokens["<|endoftext|>"] not in as_text
    assert verdict_bpe.decode(as_text) == "a <|endoftext|>"


def test_round_trips_on_many_random_strings(verdict_bpe):
    for s in random_strings(0):
        assert verdict_bpe.decode(verdict_bpe.encode(s)) == s
    for s in ["Déjà vu, naïve café", "Ça va très bien, merci", "Привет, как дела?", "مرحبا بالعالم",
              "你好，世界", "emoji 🙂🚀👍🏽 family 👨‍👩‍👧"]:
        ids = verdict_bpe.encode(s)
        assert verdict_bpe.decode(ids) == s
        # every token is a run of the text's own UTF-8 bytes, in order (a token may end inside a character)
        assert b"".join(verdict_bpe.token_bytes(i) for i in ids) == s.encode("utf-8")


def test_unseen_words_become_subword_pieces(verdict_bpe):
    for word in ["cats", "playing", "unbelievable", "someunknownPlace"]:
        pieces = verdict_bpe.tokenize(word)
        assert "".join(pieces) == word and 1 < len(pieces) < len(word)
    assert verdict_bpe.tokenize(" the") == [" the"]


def test_gpt2_parity_on_the_verdict(gpt2_bpe, gpt2_tok, verdict_text):
    ids = gpt2_bpe.encode(verdict_text)
    assert ids == gpt2_tok.encode(verdict_text)
    assert gpt2_bpe.decode(ids) == verdict_text


def test_gpt2_parity_multilingual_and_random_bytes(gpt2_bpe, gpt2_tok):
    sample = ("Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace. "
              "Déjà vu — naïve façade. Привет мир! مرحبا 你好世界 🙂🚀 I'm they'll we've 12345   spaces\n\n")
    assert gpt2_bpe.encode(sample, allowed_special="all") == gpt2_tok.encode(sample, allowed_special="all")
    rng = random.Random(1)
    for _ in range(200):
        s = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))).decode("utf-8", errors="replace")
        ids = gpt2_bpe.encode(s, disallowed_special=())
        assert ids == gpt2_tok.encode(s, disallowed_special=())
        assert gpt2_bpe.decode(ids) == gpt2_tok.decode(ids)
    odd = [226, 228]  # a token sequence that is not valid UTF-8 on its own
    assert gpt2_bpe.decode(odd) == gpt2_tok.decode(odd)


def test_save_load_round_trip(tmp_path, verdict_bpe, gpt2_bpe, verdict_text):
    path = verdict_bpe.save(tmp_path / "tok.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "llms-from-scratch-bpe" and data["version"] == 1
    assert data["merges"][0].count(" ") == 1  # human-readable "a b" merges like vocab.bpe
    again = BPETokenizer.load(path)
    assert again.merges == verdict_bpe.merges and again.special_tokens == verdict_bpe.special_tokens
    assert again.encode(verdict_text) == verdict_bpe.encode(verdict_text)
    g = BPETokenizer.load(gpt2_bpe.save(tmp_path / "gpt2.json"))
    assert g.encode(verdict_text[:2000]) == gpt2_bpe.encode(verdict_text[:2000])


def test_load_errors_name_the_file(tmp_path, verdict_bpe):
    path = verdict_bpe.save(tmp_path / "tok.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    (tmp_path / "v2.json").write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(ValueError, match="v2.json' has version 2"):
        BPETokenizer.load(tmp_path / "v2.json")
    (tmp_path / "cut.json").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.json' is damaged"):
        BPETokenizer.load(tmp_path / "cut.json")
    (tmp_path / "bad.json").write_text(json.dumps({**data, "merges": ["zz"]}))
    with pytest.raises(ValueError, match="bad.json' is damaged"):
        BPETokenizer.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        BPETokenizer.load(tmp_path / "none.json")


def test_cli_trains_prints_and_saves(tmp_path, capsys):
    from ch02_text.bpe import main

    tok = main(["--vocab-size", "400", "--out", str(tmp_path / "t.json"), "--show-merges", "5"])
    out = capsys.readouterr().out
    assert "trained 143 merges: vocab_size 400" in out and "unbelievable" in out and "<|unk|>" in out
    assert BPETokenizer.load(tmp_path / "t.json").merges == tok.merges
