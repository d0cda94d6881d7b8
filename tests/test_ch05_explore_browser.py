"""The explorer page in a real browser (issue 23): Playwright driving the system's Chromium (Debian's
chromium-headless-shell or chromium, or $LLMS_CHROMIUM) against a server started on port 0 in the test.

What a reader sees is checked against the tokenizer, the model and the sampling functions; nothing is
fetched from any host but the server. Without Playwright or a Chromium the tests skip with one line saying
what to install (under LLMS_STRICT_TESTS, as .ci/run sets, they fail instead).

The README's screenshot: LLMS_EXPLORER_CHECKPOINT=checkpoints/model.pth
LLMS_EXPLORER_SCREENSHOT=ch05_pretraining/explorer_page/screenshot.png LLMS_EXPLORER_PROMPT="I HAD always thought
Jack Gisburn rather a cheap genius" python -m pytest -k screenshot tests/test_ch05_explore_browser.py (on the
chapter-5 model of python -m ch05_pretraining)."""

import io
import os
import urllib.parse

import pytest
import torch

from explorer_site import CONTEXT, TEXT, serve, tiny_model

from ch02_text.tokenizer_choice import choose_tokenizer, tokenizer_to_dict
from ch05_pretraining.checkpoint import save_checkpoint
from ch05_pretraining.engine.explorer import Explorer
from ch05_pretraining.engine.model_source import load_model
from ch05_pretraining.generate import main as generate_main
from ch05_pretraining.sampling import next_token_probs

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The model the page shows: $LLMS_EXPLORER_CHECKPOINT, else a tiny one with a character tokenizer."""
    if os.environ.get("LLMS_EXPLORER_CHECKPOINT"):
        return os.environ["LLMS_EXPLORER_CHECKPOINT"]
    tok = choose_tokenizer("char", text=TEXT)
    path = tmp_path_factory.mktemp("page") / "model.pt"
    save_checkpoint(path, tiny_model(tok), tokenizer=tokenizer_to_dict(tok), run_options={"start_context": "to be"})
    return str(path)


@pytest.fixture(scope="module")
def site(checkpoint):
    model, tok, prompt = load_model(checkpoint=checkpoint)
    explorer = Explorer(model, tok, prompt, source=os.path.basename(checkpoint))
    server, base = serve(explorer)
    yield base, explorer
    server.shutdown()
    server.server_close()


class Page:
    """One tab, with every request it makes recorded."""

    def __init__(self, browser, base):
        self.base, self.requests, self.errors = base, [], []
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, **state):
        self.page.goto(f"{self.base}/?{urllib.parse.urlencode(state)}")
        self.page.wait_for_selector("#tokens .piece")
        return self.page

    def settle(self):
        """Wait until what the page asked for is drawn (its <body data-pending> counts analyses and bar updates,
        from the moment a control moves)."""
        self.page.wait_for_function("document.body.dataset.pending === '0'")


@pytest.fixture
def tab(browser, site):
    page = Page(browser, site[0])
    yield page
    assert not page.errors, page.errors  # no script error on any page
    assert all(url.startswith(site[0] + "/") for url in page.requests), page.requests  # nothing from elsewhere
    page.page.close()


def cells(page):
    return page.eval_on_selector_all("#heatmap [data-row]", "els => els.map(e => [+e.dataset.row, "
                                                            "+e.dataset.col, +e.dataset.weight])")


def bars(page):
    return page.eval_on_selector_all("#bars [data-token-id]", "els => els.map(e => [+e.dataset.tokenId, "
                                                              "+e.dataset.p])")


def slide(page, selector, value):
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", str(value))


def test_the_pieces_and_ids_are_the_tokenizers(tab, site):
    explorer = site[1]
    page = tab.open(prompt="to be or not, to be:")
    ids = explorer.tokenizer.encode("to be or not, to be:")
    pieces = page.eval_on_selector_all("#tokens [data-token-id]", "els => els.map(e => [+e.dataset.tokenId, "
                                                                  "e.textContent])")
    assert pieces == [[i, explorer.tokenizer.decode([i])] for i in ids]
    assert page.locator("#token-count").text_content().startswith(f"{len(ids)} tokens of a context of")
    tab.settle()
    # only the pieces and the bars carry token ids
    assert page.locator("[data-token-id]").count() == len(ids) + page.locator("#bars [data-token-id]").count()


def test_every_heatmap_row_sums_to_one_and_nothing_sees_the_future(tab, site):
    page = tab.open(prompt="whether 'tis nobler", layer=1, head="avg")
    tab.settle()
    grid = cells(page)
    n = len(site[1].tokenizer.encode("whether 'tis nobler"))
    assert len(grid) == n * n
    rows = [sum(w for r, _, w in grid if r == i) for i in range(n)]
    assert rows == pytest.approx([1.0] * n, abs=1e-5)
    assert all(w == 0 for r, c, w in grid if c > r) and any(w > 0 for r, c, w in grid if c < r)
    page.select_option("#head", "2")
    page.wait_for_function("location.search.includes('head=2')")
    tab.settle()
    assert cells(page) != grid  # another head, another map


def test_moving_a_slider_changes_the_bars_as_the_sampling_functions_say(tab, site):
    model, tok = site[1].model, site[1].tokenizer
    page = tab.open(prompt="to be or not")
    tab.settle()
    assert len(bars(page)) == 1  # temperature 0: greedy
    logits = model(torch.tensor([tok.encode("to be or not")]))[:, -1].float()
    for temperature, top_k in [(2.0, 0), (0.5, 0), (2.0, 5)]:
        slide(page, "#top-k", top_k)
        slide(page, "#temperature", temperature)
        probs = next_token_probs(logits, temperature, top_k or None, None)[0]
        expected = torch.topk(probs, min(20, int((probs > 0).sum()))).values.tolist()
        tab.settle()
        assert [p for _, p in bars(page)] == pytest.approx(expected, abs=1e-6)
    assert "temperature=2" in page.url and "top_k=5" in page.url  # the address follows the controls


def test_the_streamed_greedy_text_equals_the_generate_cli(tab, site, checkpoint):
    page = tab.open(prompt="to be or", max_new_tokens=40)
    page.click("#generate")
    page.wait_for_selector("#output[data-done=true]", timeout=30_000)
    cli = generate_main(["--checkpoint", checkpoint, "--prompt", "to be or", "--max-new-tokens", "40",
                         "--dtype", "float32", "--device", "cpu"])
    assert page.locator("#output").text_content() == cli


def test_an_empty_prompt_shows_the_alert_and_the_next_prompt_works(tab):
    page = tab.open(prompt="to be")
    page.fill("#prompt", "")
    alert = page.locator("#error[role=alert]")
    alert.wait_for(state="visible")
    assert "prompt is empty" in alert.text_content()
    page.click("#generate")  # always clickable: it says the same
    assert alert.is_visible()
    page.fill("#prompt", "or not")
    page.wait_for_function("document.querySelectorAll('#tokens .piece').length === 6")
    alert.wait_for(state="hidden")


def test_the_address_holds_the_state_and_a_bad_value_in_it_is_an_alert(tab):
    page = tab.open(prompt="to be or", layer=2, head=3, temperature=1.25, top_k=7, top_p=0.9, max_new_tokens=12)
    assert [page.input_value(s) for s in ("#prompt", "#layer", "#head", "#temperature", "#top-k", "#top-p",
                                          "#max-new-tokens")] == ["to be or", "2", "3", "1.25", "7", "0.9", "12"]
    page = tab.open(prompt="to be", layer=99, temperature="hot")
    notice = page.locator("#notice[role=alert]")
    assert "layer=99" in notice.text_content() and "temperature=hot" in notice.text_content()
    assert page.input_value("#layer") == "0" and page.input_value("#temperature") == "0"
    tab.settle()
    assert cells(page)  # and the page works


def test_sampling_values_the_sliders_cannot_hold_reach_the_api_unchanged(tab):
    """?top_p=1e-6 keeps the one most likely token (the API's answer), not the slider's nearest step; a
    temperature between the slider's steps and a top_k past its end are kept too."""
    page = tab.open(prompt="to be or not", temperature=1.5, top_p=1e-6)
    tab.settle()
    assert [p for _, p in bars(page)] == [1.0]
    assert float(page.locator("#top-p-value").text_content()) == 1e-6 and "top_p=0.000001" in page.url
    page = tab.open(prompt="to be or not", temperature=1.234, top_k=0)
    tab.settle()
    assert "1.234" in page.locator("#temperature-value").text_content() and len(bars(page)) == 20
    slide(page, "#temperature", 2.0)  # moved by hand: the slider's value from then on
    tab.settle()
    assert "temperature=2" in page.url


def test_a_prompt_longer_than_the_context_is_cropped_with_an_alert(tab):
    page = tab.open(prompt=TEXT[:40])
    tab.settle()
    assert page.locator("#tokens .piece").count() == 40
    assert page.locator("#tokens .piece.unseen").count() == 40 - CONTEXT
    assert "sees the last" in page.locator("#cropped[role=alert]").text_content()
    assert len(cells(page)) == CONTEXT * CONTEXT


def test_stop_ends_the_generation_on_the_server_too(tab, site):
    page = tab.open(prompt="to be", max_new_tokens=1000, temperature=1)
    page.click("#generate")
    page.wait_for_function("document.querySelector('#output .generated')?.textContent.length > 5")
    page.click("#stop")
    assert page.get_attribute("#output", "data-done") == "true"
    page.wait_for_function("async () => (await (await fetch('/api/info')).json()).active_generations === 0",
                           timeout=10_000)
    assert len(page.locator("#output .generated").text_content()) < 1000


def test_a_loaded_page_holds_no_open_request(tab):
    page = tab.open(prompt="to be")
    tab.settle()
    pending = page.evaluate("performance.getEntriesByType('resource').filter(e => e.responseEnd === 0).length")
    assert pending == 0


def test_screenshot_is_not_blank(tab, tmp_path):
    from matplotlib.image import imread

    state = dict(layer=1, head="avg", temperature=1.0, top_k=25)  # without a prompt: the run's own first words
    if os.environ.get("LLMS_EXPLORER_PROMPT"):
        state["prompt"] = os.environ["LLMS_EXPLORER_PROMPT"]
    page = tab.open(**state)
    tab.settle()
    page.click("#generate")
    page.wait_for_selector("#output[data-done=true]", timeout=60_000)
    png = page.screenshot(full_page=True)
    image = imread(io.BytesIO(png))
    assert image.shape[0] > 600 and image.std() > 0.05 and len({tuple(p) for p in image[::7, ::7, :3].reshape(-1, 3)
                                                                .tolist()}) > 50
    (tmp_path / "explorer.png").write_bytes(png)
    if os.environ.get("LLMS_EXPLORER_SCREENSHOT"):
        with open(os.environ["LLMS_EXPLORER_SCREENSHOT"], "wb") as f:
            f.write(png)
