// The demo's chat page: polls each chat's transcript and posts what the person types and taps.
// Text from the bot is shown as text (textContent), never parsed as HTML.
"use strict";

const INVOICE = /\b(lnbcrt|lntbs|lntb|lnbc)[0-9a-z]{20,}\b/gi;
const POLL_MS = 600;
const shown = new Map(); // chat key -> JSON of the last transcript drawn
const paid = new Set(); // invoices paid from this page (the button stays "paid" on redraws)

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!answer.ok) {
    const problem = await answer.json().catch(() => ({}));
    throw new Error(problem.detail || answer.statusText);
  }
  return answer.json();
}

function speaker(section) {
  const choice = section.querySelector("select.as");
  return Number(choice ? choice.value : section.dataset.defaultUser);
}

function showError(section, message) {
  let line = section.querySelector(".error");
  if (!line) {
    line = element("div", "error");
    section.insertBefore(line, section.querySelector("form"));
  }
  line.textContent = message;
}

function clearError(section) {
  const line = section.querySelector(".error");
  if (line) line.remove();
}

async function payFromOutside(section, invoice, button) {
  button.disabled = true;
  try {
    try {
      await post("/api/pay", { invoice });
    } catch (error) {
      if (!/amount/i.test(error.message)) throw error;
      const sats = Number(window.prompt("This invoice names no amount. Pay how many sats?"));
      if (!sats) return;
      await post("/api/pay", { invoice, amount_sats: sats });
    }
    paid.add(invoice);
    button.textContent = "Paid from outside";
    clearError(section);
  } catch (error) {
    showError(section, error.message);
    button.disabled = false;
  }
}

// An element with a class and, optionally, a text (always as text, never as HTML).
function element(tag, className, text) {
  const made = document.createElement(tag);
  made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function drawMessage(section, message) {
  const item = element("li", `msg ${message.side}`);
  item.dataset.id = message.id;
  if (message.side === "user" && section.querySelector("select.as")) {
    item.append(element("div", "from", message.from));
  }
  if (message.photo) {
    const image = element("img", "qr");
    image.src = message.photo;
    image.alt = "QR code";
    item.append(image);
  }
  if (message.text) item.append(element("div", "text", message.text));
  if (message.edited) item.append(element("div", "edited", "edited"));
  const keyboard = element("div", "keyboard");
  for (const row of message.buttons) {
    const line = element("div", "row");
    for (const button of row) {
      const tap = element("button", "", button.text);
      tap.type = "button";
      tap.disabled = !button.data;
      tap.addEventListener("click", async () => {
        tap.disabled = true;
        try {
          await post("/api/press", {
            chat: section.dataset.chat, user: speaker(section),
            message_id: message.id, data: button.data,
          });
          clearError(section);
        } catch (error) {
          showError(section, error.message);
        }
      });
      line.append(tap);
    }
    keyboard.append(line);
  }
  if (message.buttons.length) item.append(keyboard);
  if (message.side === "bot") {
    for (const invoice of new Set((message.text || "").match(INVOICE) || [])) {
      const label = paid.has(invoice) ? "Paid from outside" : "Pay from outside (simulated wallet)";
      const pay = element("button", "outside", label);
      pay.type = "button";
      pay.disabled = paid.has(invoice);
      pay.addEventListener("click", () => payFromOutside(section, invoice, pay));
      item.append(pay);
    }
  }
  return item;
}

async function refresh(section) {
  const answer = await fetch(`/api/chat/${section.dataset.chat}`);
  if (!answer.ok) return;
  const messages = await answer.json();
  const json = JSON.stringify(messages);
  if (shown.get(section.dataset.chat) === json) return;
  shown.set(section.dataset.chat, json);
  const list = section.querySelector(".messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...messages.map((message) => drawMessage(section, message)));
  if (atEnd || messages.length < 4) list.scrollTop = list.scrollHeight;
}

for (const section of document.querySelectorAll("section.chat")) {
  section.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = section.querySelector("input.text");
    const text = input.value.trim();
    if (!text) return;
    try {
      await post("/api/say", { chat: section.dataset.chat, user: speaker(section), text });
      input.value = "";
      clearError(section);
      await refresh(section);
    } catch (error) {
      showError(section, error.message);
    }
  });
  const poll = async () => {
    try {
      await refresh(section);
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  };
  poll();
}
