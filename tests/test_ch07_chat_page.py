"""The chat page at /chat (issue 36) in a real browser, as the explorer's page is tested: the streamed reply equals
the API's greedy reply, a refused request shows an [role=alert] sentence and the page keeps working, New chat
forgets the conversation."""

import pytest

from chat_server import MESSAGES, NAME, greedy_reply


@pytest.fixture
def page(browser, served):
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(served[0])
               else route.abort())  # nothing from any other host
    page.goto(f"{served[0]}/chat")
    page.wait_for_function("document.getElementById('model').textContent !== '…'")
    yield page
    page.close()


def send(page, text):
    page.fill("#text", text)
    page.click("#send")
    page.wait_for_function("document.getElementById('send').disabled === false")


def test_the_streamed_reply_is_the_apis_greedy_one(page, served):
    url, model, tok, _ = served
    assert page.text_content("#model") == NAME
    page.fill("#max_tokens", "10")
    send(page, MESSAGES[0]["content"])
    replies = page.locator(".message.assistant")
    assert replies.count() == 1 and replies.first.text_content() == greedy_reply(model, tok, MESSAGES, 10)
    send(page, "And then?")
    assert page.locator(".message").count() == 4  # the conversation goes on
    page.click("#new")
    assert page.locator(".message").count() == 0


def test_a_refused_request_is_an_alert_and_the_page_keeps_working(page):
    page.fill("#max_tokens", "4000")  # more than the server's --max-new-tokens (64 in the test)
    send(page, "Hello")
    alert = page.locator("[role=alert]")
    assert alert.is_visible() and "max_tokens must be a whole number from 1 to 64" in alert.text_content()
    assert page.locator(".message.assistant").count() == 0
    page.fill("#max_tokens", "5")
    send(page, "Hello")
    assert page.locator(".message.assistant").count() == 1 and not alert.is_visible()


def test_stop_stops_the_servers_work_too(page, served):
    import time

    url, model, tok, service = served
    steps = []

    def slow(module, args):  # each forward pass (a decoding step) a little slow: Stop comes mid-reply
        steps.append(1)
        time.sleep(0.05)
    handle = model.register_forward_pre_hook(slow)
    try:
        page.fill("#max_tokens", "64")
        page.fill("#text", MESSAGES[0]["content"])
        page.click("#send")
        page.wait_for_function("(document.querySelector('.message.assistant') || {}).textContent")
        page.click("#stop")
        page.wait_for_function("document.getElementById('send').disabled === false")
        deadline = time.monotonic() + 3
        while service.generator.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.generator.jobs == [] and service.generator.cache.rows == 0
        ran = len(steps)
        time.sleep(0.3)
        assert len(steps) == ran < 40  # no step after Stop, and far fewer than the 64 tokens asked for
        assert page.locator(".message.assistant").count() == 1  # the reply so far stays
    finally:
        handle.remove()


def test_screenshot_is_not_blank(page, tmp_path):
    """The README's screenshot: LLMS_CHAT_SCREENSHOT=ch07_instructions/chat_page/screenshot.png python -m pytest
    -k screenshot tests/test_ch07_chat_page.py (the tests' tiny chat model, random weights)."""
    import io
    import os

    from matplotlib.image import imread

    page.set_viewport_size({"width": 1000, "height": 640})
    page.fill("#max_tokens", "40")
    for text in (MESSAGES[0]["content"], "Name a color."):
        send(page, text)
    png = page.screenshot()
    image = imread(io.BytesIO(png))
    assert page.locator(".message").count() == 4 and image.std() > 0.05
    (tmp_path / "chat.png").write_bytes(png)
    if os.environ.get("LLMS_CHAT_SCREENSHOT"):
        with open(os.environ["LLMS_CHAT_SCREENSHOT"], "wb") as f:
            f.write(png)
