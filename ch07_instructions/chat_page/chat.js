// The chat page: a conversation with the served model through its own /v1/chat/completions, replies streamed
// (server-sent events), Stop aborts the request (the server stops generating), New chat forgets the history.
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];
let model = null;
let controller = null;

function showError(sentence) {
  $("error").textContent = sentence;
  $("error").hidden = false;
}

function add(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.dataset.role = role;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
}

async function loadModel() {
  try {
    const answer = await fetch("/v1/models");
    const data = await answer.json();
    model = data.data[0].id;
    $("model").textContent = model;
  } catch (err) {
    showError(`The server did not say which model it serves (${err}).`);
  }
}

function settings() {
  return {
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    max_tokens: Number($("max_tokens").value),
  };
}

async function ask(text) {
  $("error").hidden = true;
  history.push({ role: "user", content: text });
  add("user", text);
  const reply = add("assistant", "");
  controller = new AbortController();
  busy(true);
  try {
    const answer = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: history, stream: true, ...settings() }),
      signal: controller.signal,
    });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || `the server answered ${answer.status}`);
    }
    await read(answer.body, reply);
    history.push({ role: "assistant", content: reply.textContent });
  } catch (err) {
    if (err.name === "AbortError") {
      history.push({ role: "assistant", content: reply.textContent });
    } else {
      history.pop();
      reply.remove();
      showError(err.message);
    }
  } finally {
    controller = null;
    busy(false);
  }
}

async function read(stream, reply) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) reply.textContent += delta.content;
    }
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || controller) return;
  $("text").value = "";
  ask(text);
});
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("new").addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  $("log").replaceChildren();
  $("error").hidden = true;
});
loadModel();
