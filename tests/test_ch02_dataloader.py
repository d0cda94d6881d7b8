import pytest
import torch

from ch02_text.dataloader import GPTDatasetV1, create_dataloader_v1


def test_book_first_batches(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=1, max_length=4, stride=1, shuffle=False)
    it = iter(loader)
    x, y = next(it)
    assert x.tolist() == [[40, 367, 2885, 1464]] and y.tolist() == [[367, 2885, 1464, 1807]]
    x2, y2 = next(it)
    assert x2.tolist() == [[367, 2885, 1464, 1807]] and y2.tolist() == [[2885, 1464, 1807, 3619]]


def test_book_batch_of_eight(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (8, 4)
    assert x[1].tolist() == [1807, 3619, 402, 271]
    assert y[-1].tolist() == [3285, 326, 11, 287]


def test_book_embedding_shapes(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    x, _ = next(iter(loader))
    tok = torch.nn.Embedding(50257, 256)(x)
    pos = torch.nn.Embedding(4, 256)(torch.arange(4))
    assert tok.shape == (8, 4, 256) and pos.shape == (4, 256) and (tok + pos).shape == (8, 4, 256)


def test_targets_are_inputs_shifted(gpt2_tok, verdict_text):
    ds = GPTDatasetV1(verdict_text[:2000], gpt2_tok, max_length=8, stride=3)
    ids = gpt2_tok.encode(verdict_text[:2000])
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.tolist() == ids[3 * i: 3 * i + 8]
        assert y.tolist() == ids[3 * i + 1: 3 * i + 9]


def test_stride_larger_than_max_length_skips_tokens(gpt2_tok):
    text = " ".join(str(i) for i in range(100))
    ids = gpt2_tok.encode(text)
    ds = GPTDatasetV1(text, gpt2_tok, max_length=4, stride=10)
    assert len(ds) == len(range(0, len(ids) - 4, 10))
    assert ds[1][0].tolist() == ids[10:14]


def test_stride_smaller_than_max_length_overlaps(gpt2_tok):
    text = " ".join(str(i) for i in range(100))
    ds = GPTDatasetV1(text, gpt2_tok, max_length=6, stride=2)
    assert ds[0][0][2:].tolist() == ds[1][0][:4].tolist()


def test_exactly_max_length_plus_one_tokens_gives_one_window(gpt2_tok):
    ids = list(range(1000, 1009))  # 9 single-token pieces
    text = gpt2_tok.decode(ids)
    assert gpt2_tok.encode(text) == ids
    ds = GPTDatasetV1(text, gpt2_tok, max_length=8, stride=1)
    assert len(ds) == 1
    assert ds[0][0].tolist() == ids[:8] and ds[0][1].tolist() == ids[1:]
    with pytest.raises(ValueError, match="9 tokens"):
        GPTDatasetV1(text, gpt2_tok, max_length=9, stride=1)


@pytest.mark.parametrize("text", ["", "too short"])
def test_too_short_text_is_a_clear_error(gpt2_tok, text):
    with pytest.raises(ValueError) as info:
        create_dataloader_v1(text, batch_size=1, max_length=16, stride=16)
    msg = str(info.value)
    assert "max_length=16" in msg and "tokens" in msg and "use more text" in msg


def test_bad_stride_is_rejected(gpt2_tok):
    with pytest.raises(ValueError, match="stride"):
        GPTDatasetV1("hello world and more words", gpt2_tok, max_length=2, stride=0)
