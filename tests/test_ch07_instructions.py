"""Chapter 7's book code against the values the book prints: the data, the prompt, the collate function's
toy batches, the -100 convention, the loaders' batch shapes; and the Ollama client against a fake server."""

import json

import pytest
import torch
from conftest import require_data
from local_servers import FakeOllama, ollama  # noqa: F401 (the fixture)

from ch07_instructions.collate import (
    IGNORE_INDEX, InstructionDataset, custom_collate_draft_1, custom_collate_draft_2, custom_collate_fn,
)
from ch07_instructions.instruction_data import format_input, format_response, load_instruction_data, split_data

TOY_BATCH = ([0, 1, 2, 3, 4], [5, 6], [7, 8, 9])
BOOK_INPUTS = [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]


@pytest.fixture(scope="module")
def data():
    require_data("instruction-data.json", "gpt2/vocab.bpe", "gpt2/encoder.json")
    return load_instruction_data()


def test_1100_entries_split_935_110_55_in_the_files_order(data):
    assert len(data) == 1100
    train_data, test_data, val_data = split_data(data)
    assert [len(train_data), len(test_data), len(val_data)] == [935, 110, 55]
    assert train_data + test_data + val_data == data  # slices in order: nothing shuffled, nothing lost
    assert data[50] == {"instruction": "Identify the correct spelling of the following word.", "input": "Ocassion",
                        "output": "The correct spelling is 'Occasion.'"}
    assert test_data[0]["instruction"] == "Rewrite the sentence using a simile."  # the book's first test entry
    assert val_data[0]["instruction"] == "Convert the active sentence to passive: 'The chef cooks the meal every day.'"


def test_format_input_prints_the_books_prompts(data):
    assert format_input(data[50]) + format_response(data[50]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nIdentify the correct spelling of the following word."
        "\n\n### Input:\nOcassion"
        "\n\n### Response:\nThe correct spelling is 'Occasion.'")
    assert format_input(data[999]) + format_response(data[999]) == (  # an empty input leaves its section out
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nWhat is an antonym of 'complicated'?"
        "\n\n### Response:\nAn antonym of 'complicated' is 'simple'.")


def test_a_file_that_is_no_instruction_list_is_one_error_line(tmp_path):
    from ch02_text.errors import UserInputError

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    with pytest.raises(UserInputError, match="fields instruction, input, output"):
        load_instruction_data(bad)
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="is not JSON"):
        load_instruction_data(bad)


def test_the_collate_functions_give_the_books_toy_tensors():
    assert custom_collate_draft_1(TOY_BATCH).tolist() == BOOK_INPUTS
    inputs, targets = custom_collate_draft_2(TOY_BATCH)
    assert inputs.tolist() == BOOK_INPUTS
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, 50256, 50256, 50256], [8, 9, 50256, 50256, 50256]]
    inputs, targets = custom_collate_fn(TOY_BATCH)
    assert inputs.tolist() == BOOK_INPUTS
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]
    assert str(targets) == ("tensor([[    1,     2,     3,     4, 50256],\n"
                            "        [    6, 50256,  -100,  -100,  -100],\n"
                            "        [    8,     9, 50256,  -100,  -100]])")  # as the book prints it
    assert TOY_BATCH[1] == [5, 6]  # the dataset's lists are not extended in place
    inputs, targets = custom_collate_fn(TOY_BATCH, allowed_max_length=3)
    assert inputs.shape == targets.shape == (3, 3) and targets[0].tolist() == [1, 2, 3]


def test_cross_entropy_skips_minus_100_as_the_book_prints():
    logits_2 = torch.tensor([[-1.0, 1.0], [-0.5, 1.5], [-0.5, 1.5]])
    loss_1 = torch.nn.functional.cross_entropy(logits_2[:2], torch.tensor([0, 1]))
    loss_2 = torch.nn.functional.cross_entropy(logits_2, torch.tensor([0, 1, 1]))
    loss_3 = torch.nn.functional.cross_entropy(logits_2, torch.tensor([0, 1, IGNORE_INDEX]))
    assert [str(loss_1), str(loss_2), str(loss_3)] == ["tensor(1.1269)", "tensor(0.7936)", "tensor(1.1269)"]
    assert loss_1 == loss_3


def test_chapter_5s_loss_averages_over_the_targets_that_are_not_minus_100():
    from ch05_pretraining.loss import calc_loss_batch

    torch.manual_seed(0)
    table = torch.nn.Embedding(50257, 7)
    head = torch.nn.Linear(7, 50257)
    model = lambda ids: head(table(ids))  # noqa: E731 -- any map from ids (b, n) to logits (b, n, vocab)
    inputs, targets = custom_collate_fn(TOY_BATCH)
    keep = targets != IGNORE_INDEX
    by_hand = -torch.log_softmax(model(inputs), dim=-1)[keep].gather(1, targets[keep][:, None]).mean()
    torch.testing.assert_close(calc_loss_batch(inputs, targets, model, "cpu"), by_hand)
    assert keep.sum() == 15 - 5  # 5 pads after the first are left out, the first pads stay targets


def test_the_train_loaders_batches_have_the_books_shapes(data):
    from functools import partial

    from torch.utils.data import DataLoader

    from ch02_text.tokenizers import gpt2_tokenizer

    train_data, _, _ = split_data(data)
    torch.manual_seed(123)
    loader = DataLoader(InstructionDataset(train_data, gpt2_tokenizer()), batch_size=8, shuffle=True,
                        drop_last=True, collate_fn=partial(custom_collate_fn, allowed_max_length=1024))
    shapes = [tuple(inputs.shape) for inputs, _ in loader]
    assert len(shapes) == 116 and shapes[:6] == [(8, 61), (8, 76), (8, 73), (8, 68), (8, 65), (8, 72)]
    assert shapes[-3:] == [(8, 66), (8, 74), (8, 69)] and max(s[1] for s in shapes) == 91


def test_first_batches_stop_each_pass_and_count_what_they_yield():
    from ch05_pretraining.loss import calc_loss_loader
    from ch07_instructions.previous_chapters import EpochSteps

    loader = EpochSteps([(torch.tensor([[1]]), torch.tensor([[1]]))] * 10, 3)
    assert len(list(loader)) == len(loader) == 3 == len(list(loader))
    seen = []
    calc_loss_loader(loader, lambda ids: seen.append(1) or torch.zeros(1, 1, 2), "cpu", num_batches=5)
    assert len(seen) == 3  # an evaluation of 5 batches gets the 3 there are


def test_query_model_and_the_scores_against_a_fake_ollama(ollama, capsys):  # noqa: F811
    from ch07_instructions.judge import generate_model_scores, query_model, server_answers

    assert server_answers(ollama)
    FakeOllama.answers = {"`Red.`": "85", "`Green.`": "about 40"}
    assert query_model("What do Llamas eat?", url=ollama) == "I'd say 50."
    sent = FakeOllama.requests[-1]
    assert sent == {"model": "llama3", "messages": [{"role": "user", "content": "What do Llamas eat?"}],
                    "options": {"seed": 123, "temperature": 0, "num_ctx": 2048}}
    entries = [{"instruction": "Name a color.", "input": "", "output": "Blue.", "model_response": r}
               for r in ("Red.", "Green.")]
    assert generate_model_scores(entries, "model_response", url=ollama) == [85]
    assert "Could not convert score: about 40" in capsys.readouterr().out


def test_a_server_without_the_judge_is_one_error_line(ollama):  # noqa: F811
    from ch02_text.errors import UserInputError
    from ch07_instructions.judge import judge_errors, query_model

    with pytest.raises(UserInputError, match="answered 404 .*ollama pull phi3"), judge_errors(ollama, "phi3"):
        query_model("hi", "phi3", ollama)


def test_choose_starting_model_reads_gpt2_weights_or_says_what_is_missing(monkeypatch, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from ch06_classification import pretrained as ch06
    from ch07_instructions.pretrained import GPT2_WEIGHTS, choose_starting_model
    from ch07_instructions.previous_chapters import GPT_CONFIG_124M, TINY_SIZES
    from ch07_instructions.responses import sft_file_name

    tiny = {**GPT_CONFIG_124M, "drop_rate": 0.0, "qkv_bias": True, **TINY_SIZES}
    monkeypatch.setattr(ch06, "find_local_data_file", lambda name: None)  # no weights in data/
    start = choose_starting_model(tiny, tiny, out_dir=tmp_path)
    assert capsys.readouterr().out == (
        "GPT-2 medium weights not found: download model.safetensors from huggingface.co/openai-community/"
        f"gpt2-medium and save it as data/{GPT2_WEIGHTS} (or in $LLMS_DATA_DIR)\n")
    assert start.source == "fresh"

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128))
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    hf.eval().save_pretrained(tmp_path / "gpt2")
    start = choose_starting_model(tiny, tiny, gpt2_option=str(tmp_path / "gpt2"))
    ids = torch.tensor([[21106, 318, 281, 12064]])
    with torch.no_grad():
        torch.testing.assert_close(start.model.eval()(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)
    assert start.source == "gpt2" and capsys.readouterr().out == ""
    medium = {"emb_dim": 1024, "n_layers": 24, "n_heads": 16}
    assert sft_file_name("gpt2-medium (355M)", medium, start) == "gpt2-gpt-2x32-sft.pth"  # not medium: says so


def test_a_missing_data_file_is_downloaded_from_the_books_repository(monkeypatch, tmp_path):
    import io

    from ch02_text import data_files
    from ch07_instructions.instruction_data import DATA_FILE

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    entries = [{"instruction": "Name a color.", "input": "", "output": "Blue."}]
    seen = []
    monkeypatch.setattr(data_files.urllib.request, "urlopen", lambda url, timeout: seen.append(url) or
                        Response(json.dumps(entries).encode()))
    monkeypatch.setattr(data_files, "DATA_DIR", tmp_path)
    monkeypatch.delenv(data_files.DATA_ENV, raising=False)
    monkeypatch.delenv(data_files.NO_DOWNLOAD_ENV, raising=False)
    assert load_instruction_data() == entries and (tmp_path / DATA_FILE).is_file()
    assert seen == [("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/"
                     "instruction-data.json")]
