// Chat page: posts the question to /api/v1/chat and renders the SSE stream as it arrives.
// Model output is untrusted: it is only ever inserted as text, never as HTML.
"use strict";

(function () {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const chat = document.getElementById("chat");
  const list = document.getElementById("messages");
  const input = document.getElementById("message");
  const sendButton = document.getElementById("send");
  const errorBox = document.getElementById("chat-error");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addMessage(role, text) {
    const hint = document.getElementById("hint");
    if (hint) hint.remove();
    const item = el("li", "message " + role);
    item.appendChild(el("div", "role", role === "user" ? "You" : "Assistant"));
    const content = el("div", "content", text);
    item.appendChild(content);
    list.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  // One line per cited document, with the passage markers ([1][3]) that point into it.
  function showCitations(item, citations) {
    if (!citations.length) return;
    const byDocument = new Map();
    citations.forEach(function (c) {
      if (!byDocument.has(c.document)) byDocument.set(c.document, { title: c.title, markers: [] });
      byDocument.get(c.document).markers.push(c.marker);
    });
    const ul = el("ul", "citations");
    byDocument.forEach(function (doc, documentId) {
      const li = el("li");
      li.appendChild(el("span", "markers", doc.markers.map(function (m) { return "[" + m + "]"; }).join("")));
      li.appendChild(document.createTextNode(" "));
      const a = el("a", null, doc.title);
      a.href = "/documents/" + encodeURIComponent(documentId) + "/";
      li.appendChild(a);
      ul.appendChild(li);
    });
    item.appendChild(ul);
  }

  function addToSidebar(conversationId, title) {
    const sidebar = document.getElementById("conversation-list");
    if (!sidebar) return;
    const empty = sidebar.querySelector(".empty");
    if (empty) empty.remove();
    sidebar.querySelectorAll("li.current").forEach(function (li) { li.classList.remove("current"); });
    const li = el("li", "current");
    const a = el("a", null, title);
    a.href = "/c/" + encodeURIComponent(conversationId) + "/";
    li.appendChild(a);
    sidebar.insertBefore(li, sidebar.firstChild);
  }

  function labelProvider(item, final) {
    if (final.provider === "local") {
      const badge = el("span", "badge", "offline extractive answer");
      badge.title = "The offline provider quotes your documents; it is not a language model.";
      const role = item.querySelector(".role");
      role.appendChild(document.createTextNode(" "));
      role.appendChild(badge);
    }
  }

  // One line per tool call the model proposed: which tool, and whether it ran.
  function showTool(item, tool) {
    let list = item.querySelector(".tools");
    if (!list) {
      list = el("ul", "tools");
      item.insertBefore(list, item.querySelector(".content"));
    }
    const text = tool.ok ? "tool ran: " + tool.name : "tool refused: " + tool.name + " (" + tool.reason + ")";
    list.appendChild(el("li", tool.ok ? "tool ok" : "tool refused", text));
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  // Parse "event: x\ndata: {...}\n\n" frames out of a growing buffer.
  function takeEvents(buffer, onEvent) {
    let index;
    while ((index = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      let name = "message";
      let data = "";
      frame.split("\n").forEach(function (line) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      });
      onEvent(name, data ? JSON.parse(data) : null);
    }
    return buffer;
  }

  async function send(message) {
    errorBox.hidden = true;
    addMessage("user", message);
    const reply = addMessage("assistant", "");
    reply.classList.add("streaming");
    const content = reply.querySelector(".content");
    const conversation = chat.dataset.conversation;
    const response = await fetch("/api/v1/chat", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRFToken": csrfToken,
      },
      body: JSON.stringify({ message: message, conversation: conversation ? Number(conversation) : null }),
    });
    if (!response.ok) {
      reply.remove();
      let detail = "The request failed (" + response.status + ").";
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      showError(detail);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      buffer = takeEvents(buffer, function (name, data) {
        if (name === "token") {
          content.textContent += data.text;
        } else if (name === "tool") {
          showTool(reply, data);
        } else if (name === "citations") {
          showCitations(reply, data);
        } else if (name === "done") {
          labelProvider(reply, data);
          if (!chat.dataset.conversation) {
            chat.dataset.conversation = String(data.conversation);
            history.replaceState(null, "", "/c/" + data.conversation + "/");
            addToSidebar(data.conversation, message.slice(0, 80));
          }
        } else if (name === "blocked") {
          reply.classList.add("blocked");
          content.textContent = data.answer;
        } else if (name === "error") {
          showError(data.detail || "The answer was interrupted.");
        }
      });
    }
    reply.classList.remove("streaming");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const message = input.value.trim();
    if (!message) return;
    input.value = "";
    sendButton.disabled = true;
    send(message)
      .catch(function () { showError("Could not reach the server."); })
      .finally(function () { sendButton.disabled = false; input.focus(); });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
