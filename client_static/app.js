// The tether page: built from the server's `welcome`, so it works for any app.
//
// Every value that comes from a user or the server is put into the page as
// text (textContent, text nodes), never parsed as HTML, except the Markdown of
// chat replies and text outputs: rendered by marked with raw HTML escaped, then
// sanitised by DOMPurify (an allow-list of tags, no scripts, no event handlers,
// no javascript: URLs) before it reaches the page (`renderMarkdown`).
//
// Nothing here knows the demo: titles, descriptions and widgets (the chat room)
// come from what the app declares in the welcome (protocol 9).

import { Codes, connect } from "./tether.js";
import { Marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";

const MAX_ARCHIVED_SESSIONS = 3; // earlier sessions' conversations kept in a chat log
const MAX_ROOM_MESSAGES = 300; // messages a room log shows (oldest dropped)
const NEAR_BOTTOM_PX = 48; // a log this close to its end follows new messages
const STORAGE_KEY = "tether.room";
const NAV_MIN_PANELS = 3; // fewer panels need no list of them
const STOPPED = "Stopped; nothing was kept.";

const client = connect({ deltas: true });

// -- small DOM helpers ---------------------------------------------------------

let nextUid = 0;
const uid = (prefix) => `${prefix}-${++nextUid}`;

/**
 * Create an element. `props`: "class", "text" (textContent), "on" (event
 * handlers), booleans as presence attributes, anything else as an attribute.
 * Children are nodes or strings; strings become text nodes.
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

function hiddenText(text) {
  return h("span", { class: "visually-hidden", text });
}

/** Run `mutate` on a scrolling log; keep it pinned to the end if it was there (or `force`). */
function follow(el, mutate, force = false) {
  const pinned = force || el.scrollHeight - el.scrollTop - el.clientHeight <= NEAR_BOTTOM_PX;
  mutate();
  if (pinned) el.scrollTop = el.scrollHeight;
}

function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function asText(value) {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "";
  return JSON.stringify(value);
}

function prettyJson(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** A name made readable for a title: `track_score` → "Track score". */
function readable(name) {
  const words = String(name)
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[_\-.:\s]+/g, " ")
    .trim()
    .toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : String(name);
}

/** The title of a function: its declared label (protocol 9), else its name made readable. */
function fnLabel(spec) {
  return typeof spec?.label === "string" && spec.label.trim() ? spec.label : readable(spec?.name);
}

// -- Markdown ------------------------------------------------------------------------

const escapeHtml = (text) =>
  String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");

// Raw HTML in Markdown is shown as the text it is, never as markup.
const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html(token) {
      return token.block ? `<p>${escapeHtml(token.text)}</p>` : escapeHtml(token.text);
    },
  },
});

// An allow-list: no img (no tracking pixels, no onerror), script, iframe, svg,
// form or style, and no attribute that could run anything.
const SANITIZE = {
  // prettier-ignore
  ALLOWED_TAGS: [
    "a", "p", "br", "strong", "em", "del", "code", "pre", "ul", "ol", "li", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
  ],
  ALLOWED_ATTR: ["href", "title", "start", "align"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** Show `text` in `el` as sanitised Markdown. */
function renderMarkdown(el, text) {
  el.replaceChildren(DOMPurify.sanitize(markdown.parse(String(text)).trim(), SANITIZE));
}

/** Put `text` on the clipboard; true when it got there. */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (an insecure origin) or no permission: the old way.
    const area = h("textarea", { class: "visually-hidden", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let done = false;
    try {
      done = document.execCommand("copy");
    } catch {
      done = false;
    }
    area.remove();
    return done;
  }
}

/** The outputs of a submit as a list again (tether.js unwraps a single output). */
function outputList(value, count) {
  return count === 1 ? [value] : Array.isArray(value) ? value : [];
}

/** A plain sentence for an error, with its code for whoever reports a bug. */
function describeError(error) {
  const code = error?.code || "error";
  const plain = {
    [Codes.DISCONNECTED]: "The connection dropped before the answer arrived.",
    [Codes.NOT_CONNECTED]: "There is no connection right now.",
    [Codes.CLOSED]: "The page closed its connection.",
    [Codes.CANCELLED]: STOPPED,
    [Codes.TOO_LARGE]: "Too large to send.",
    [Codes.TOO_MANY_PENDING]: "Too many requests in flight; wait for some answers.",
    queue_full: "The server is busy right now (its queue is full). Try again in a moment.",
    timeout: "The server stopped it: it took too long.",
    shutting_down: "The server is restarting; try again once it is back.",
  }[code];
  if (code === Codes.CANCELLED) return STOPPED; // said once, without a code
  return `${plain || error?.message || "Something went wrong."} (${code})`;
}

/** What happened to a message that failed, said first: was it sent at all? */
/** Mark a pending message `el` as failed, say why in `status`, and offer a Retry
 * button in `meta` that removes the message and calls `retry`. */
function markFailed(el, meta, status, message, retry) {
  el.classList.remove("pending");
  el.classList.add("failed");
  meta.dataset.kind = "error";
  status.textContent = message;
  meta.append(
    h("button", {
      type: "button",
      class: "btn small",
      text: "Retry",
      on: {
        click: () => {
          el.remove();
          retry();
        },
      },
    }),
  );
}

function failedMessage(error) {
  if (error?.code === Codes.CANCELLED) return STOPPED;
  const sent = error?.code !== Codes.NOT_CONNECTED && error?.code !== Codes.TOO_LARGE;
  return `${sent ? "No reply." : "Not sent."} ${describeError(error)}`;
}

function setStoredRoom(value) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(value));
  } catch {
    // storage may be disabled; remembering the name is only a convenience
  }
}

function storedRoom() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

/**
 * A panel: a region named by its `title`. `head.fn` (the function's name, as a
 * script submits it) and `head.actions` (buttons) go next to the title.
 */
function panelSection(title, description, className, head, ...children) {
  const titleId = uid("title");
  return h(
    "section",
    {
      class: `card panel ${className}`,
      "aria-labelledby": titleId,
      id: uid("panel"),
      tabindex: "-1",
    },
    h(
      "div",
      { class: "panel-head" },
      h(
        "div",
        { class: "panel-title" },
        h("h2", { id: titleId, text: title }),
        head.fn && head.fn !== title ? h("code", { class: "fn-name", text: head.fn }) : null,
        head.actions ? h("div", { class: "panel-actions" }, head.actions) : null,
      ),
      description ? h("p", { class: "description", text: description }) : null,
    ),
    ...children,
  );
}

function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${textarea.scrollHeight + 2}px`;
}

// -- inputs ------------------------------------------------------------------------

const HINTS = {
  text: "text",
  number: "number",
  checkbox: "true or false",
  json: "JSON",
  chatbot: "JSON: a list of [user, bot] pairs",
};

/** A labelled input for one component: `read()` gives {ok, value} or {ok: false}. */
function makeField(component, label) {
  const id = uid("input");
  const hintId = uid("hint");
  const errorId = uid("error");
  const hint = h("span", { class: "hint", id: hintId, text: HINTS[component] || component });
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const describedBy = `${hintId} ${errorId}`;
  let control;
  let read;

  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
    control.setAttribute("aria-invalid", "true");
    return { ok: false, message };
  };
  const clear = () => {
    error.textContent = "";
    error.hidden = true;
    control.removeAttribute("aria-invalid");
  };

  if (component === "checkbox") {
    control = h("input", { type: "checkbox", id, "aria-describedby": describedBy });
    read = () => ({ ok: true, value: control.checked });
    return {
      el: h(
        "div",
        { class: "field field-checkbox" },
        control,
        h("label", { for: id, text: label }),
        hint,
        error,
      ),
      read,
      focus: () => control.focus(),
    };
  }

  if (component === "number") {
    control = h("input", {
      type: "number",
      id,
      step: "any",
      "aria-describedby": describedBy,
    });
    read = () => {
      if (control.validity.badInput) return fail("That is not a number.");
      if (control.value.trim() === "") return fail("Enter a number.");
      const value = Number(control.value);
      if (!Number.isFinite(value)) return fail("Enter a finite number.");
      clear();
      return { ok: true, value };
    };
    control.addEventListener("input", clear);
  } else if (component === "json" || component === "chatbot") {
    control = h("textarea", {
      id,
      class: "json-editor",
      rows: "4",
      spellcheck: "false",
      autocapitalize: "off",
      autocomplete: "off",
      placeholder: component === "chatbot" ? '[["hello", "hi"]]' : '{"key": "value"}',
      "aria-describedby": describedBy,
    });
    read = () => {
      const text = control.value.trim();
      if (text === "") return fail('Enter a JSON value (for example null, 3, "text" or {}).');
      let value;
      try {
        value = JSON.parse(text);
      } catch (e) {
        return fail(`Invalid JSON: ${e.message}`);
      }
      if (component === "chatbot" && !isChatHistory(value)) {
        return fail("Expected a list of [user, bot] pairs of text or null.");
      }
      clear();
      return { ok: true, value };
    };
    // Say at once when the JSON stops being valid, not only on Run.
    control.addEventListener("input", () => {
      if (control.value.trim() === "") clear();
      else read();
    });
  } else {
    control = h("textarea", { id, rows: "2", "aria-describedby": describedBy });
    control.addEventListener("input", () => autosize(control));
    read = () => ({ ok: true, value: control.value });
  }
  return {
    el: h(
      "div",
      { class: "field" },
      h("div", { class: "field-label" }, h("label", { for: id, text: label }), hint),
      control,
      error,
    ),
    read,
    focus: () => control.focus(),
    control,
  };
}

function isChatHistory(value) {
  return (
    Array.isArray(value) &&
    value.every(
      (pair) =>
        Array.isArray(pair) &&
        pair.length === 2 &&
        pair.every((part) => part === null || typeof part === "string"),
    )
  );
}

// -- outputs -----------------------------------------------------------------------

/** A view of one output: `show(value)` replaces what it displays. */
function makeOutput(component, index, count) {
  const label = count === 1 ? "output" : `output ${index + 1}`;
  const head = h(
    "div",
    { class: "output-label" },
    h("span", { text: label }),
    h("span", { class: "hint", text: HINTS[component] || component }),
  );
  let body;
  let show;
  if (component === "chatbot") {
    body = h("div", { class: "chat-log compact" });
    const log = new ChatLog(body, "No messages.");
    show = (value) => log.render(value);
  } else if (component === "json" || !HINTS[component]) {
    body = h("pre", { class: "value json-value" });
    show = (value) => {
      body.textContent = prettyJson(value);
    };
  } else if (component === "text") {
    body = h("div", { class: "value text-value md" });
    show = (value) => renderMarkdown(body, asText(value));
  } else {
    body = h("p", { class: `value ${component}-value` });
    show = (value) => {
      body.textContent = component === "checkbox" ? String(Boolean(value)) : asText(value);
    };
  }
  const el = h("div", { class: "output", "aria-live": "polite" }, head, body);
  return { el, show };
}

// -- chat log ------------------------------------------------------------------------

/**
 * The bubbles of a chatbot value, updated in place: a streamed reply grows in
 * its own bubble instead of the log being redrawn.
 */
class ChatLog {
  constructor(el, emptyText) {
    this.el = el;
    this.pairs = [];
    this.empty = h("p", { class: "empty", text: emptyText });
    el.append(this.empty);
  }

  _bubble(who) {
    const bubble = { el: null, body: null, raw: null, markdown: who === "bot" };
    bubble.body = h("div", { class: who === "bot" ? "body md" : "body" });
    let copy = null;
    if (who === "bot") {
      copy = h("button", {
        type: "button",
        class: "btn small copy",
        text: "Copy",
        title: "Copy this reply",
        "aria-label": "Copy reply",
        on: {
          click: async () => {
            const ok = await copyText(bubble.raw ?? "");
            copy.textContent = ok ? "Copied" : "Copy failed";
            clearTimeout(copy.timer);
            copy.timer = setTimeout(() => {
              copy.textContent = "Copy";
            }, 2000);
          },
        },
      });
    }
    bubble.el = h(
      "div",
      { class: `msg ${who}` },
      hiddenText(who === "user" ? "You: " : "Reply: "),
      bubble.body,
      copy ? h("div", { class: "msg-tools" }, copy) : null,
    );
    return bubble;
  }

  _place(node) {
    // Settled messages go before the ones still waiting for an answer.
    this.el.insertBefore(node, this.el.querySelector(":scope > .pending"));
    this._refresh();
  }

  _refresh() {
    this.empty.hidden = this.el.children.length > 1;
  }

  render(value, { busy = false } = {}) {
    const list = Array.isArray(value) ? value : [];
    follow(this.el, () => {
      list.forEach((pair, i) => {
        const [user, bot] = Array.isArray(pair) ? pair : [null, asText(pair)];
        let turn = this.pairs[i];
        if (!turn) {
          const u = this._bubble("user");
          const b = this._bubble("bot");
          turn = { el: h("div", { class: "turn" }, u.el, b.el), user: u, bot: b };
          this.pairs.push(turn);
          this._place(turn.el);
        }
        setBubble(turn.user, user);
        setBubble(turn.bot, bot);
        turn.bot.el.removeAttribute("aria-busy");
        turn.bot.el.classList.remove("streaming");
      });
      for (const turn of this.pairs.splice(list.length)) turn.el.remove();
      const last = this.pairs.at(-1);
      if (busy && last) {
        // Screen readers wait for aria-busy to clear before reading the reply.
        last.bot.el.setAttribute("aria-busy", "true");
        last.bot.el.classList.add("streaming");
        last.bot.el.hidden = false;
      }
      this._refresh();
    });
  }

  /** A message sent but not answered yet; returns a handle to update or settle it. */
  addPending(text) {
    const status = h("span", { class: "meta-text", text: "sending…" });
    const meta = h("div", { class: "msg-meta" }, status);
    const typing = h(
      "div",
      { class: "msg bot typing" },
      hiddenText("Waiting for the reply"),
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "dot", "aria-hidden": "true" }),
    );
    const el = h(
      "div",
      { class: "turn pending" },
      h("div", { class: "msg user" }, hiddenText("You: "), h("span", { class: "body", text })),
      meta,
      typing,
    );
    follow(this.el, () => this.el.append(el), true);
    this._refresh();
    let open = true;
    return {
      get open() {
        return open;
      },
      status: (message, kind = "") => {
        status.textContent = message;
        meta.dataset.kind = kind;
      },
      resolve: () => {
        if (!open) return;
        open = false;
        el.remove();
        this._refresh();
      },
      fail: (message, retry) => {
        if (!open) return;
        open = false;
        typing.remove();
        markFailed(el, meta, status, message, () => {
          this._refresh();
          retry();
        });
        // Keep settled messages before the pending ones.
        const firstPending = this.el.querySelector(":scope > .pending");
        if (
          firstPending &&
          firstPending.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING
        ) {
          this.el.insertBefore(el, firstPending);
        }
      },
    };
  }

  /** Start over: an empty conversation (the session that held the old one is gone). */
  clear() {
    this.pairs = [];
    this.el.replaceChildren(this.empty);
    this._refresh();
  }

  /** A streamed reply whose submit then failed: it stays, marked, and is not part of the state. */
  failLast(message) {
    const turn = this.pairs.pop();
    if (!turn) return;
    turn.bot.el.removeAttribute("aria-busy");
    turn.bot.el.classList.remove("streaming");
    turn.el.classList.add("failed");
    turn.el.append(
      h("div", { class: "msg-meta", "data-kind": "error" }, h("span", { text: message })),
    );
  }

  /** A new session began: keep the old conversation, marked as over, above the new one. */
  archive(when) {
    const settled = [...this.el.children].filter(
      (node) =>
        node !== this.empty &&
        !node.classList.contains("pending") &&
        !node.classList.contains("archive") &&
        !node.classList.contains("divider"),
    );
    this.pairs = [];
    if (settled.length === 0) return;
    const box = h(
      "div",
      { class: "archive" },
      h("p", {
        class: "archive-label",
        text: "Earlier session (ended): the server no longer remembers these messages.",
      }),
    );
    this.el.insertBefore(box, settled[0]);
    box.append(...settled);
    this.el.insertBefore(
      h("p", { class: "divider", text: `New session began at ${clock(when)}` }),
      box.nextSibling,
    );
    const archives = this.el.querySelectorAll(":scope > .archive");
    for (let i = 0; i < archives.length - MAX_ARCHIVED_SESSIONS; i++) {
      const divider = archives[i].nextElementSibling;
      if (divider?.classList.contains("divider")) divider.remove();
      archives[i].remove();
    }
    this._refresh();
  }
}

function setBubble(bubble, text) {
  const missing = text === null || text === undefined;
  bubble.el.hidden = missing;
  const value = missing ? "" : asText(text);
  if (bubble.raw === value) return;
  bubble.raw = value;
  if (bubble.markdown) renderMarkdown(bubble.body, value);
  else bubble.body.textContent = value;
}

// -- panels ----------------------------------------------------------------------------

/** Any function: a form of its inputs and a view of its outputs. */
class GenericPanel {
  constructor(spec) {
    this.spec = spec;
    const labels = spec.labels || [];
    this.fields = spec.inputs.map((c, i) => makeField(c, labels[i] || `input ${i + 1}`));
    this.outputs = spec.outputs.map((c, i) => makeOutput(c, i, spec.outputs.length));
    this.current = null;
    this.runButton = h("button", { type: "submit", class: "btn primary", text: "Run" });
    this.cancelButton = h("button", {
      type: "button",
      class: "btn",
      text: "Cancel",
      hidden: true,
      on: { click: () => this.current?.cancel() },
    });
    this.status = h("p", { class: "run-status", "aria-live": "polite" });
    for (const field of this.fields) {
      field.control?.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          this.run();
        }
      });
    }
    const form = h(
      "form",
      {
        class: "fn-form",
        novalidate: true,
        on: {
          submit: (event) => {
            event.preventDefault();
            this.run();
          },
        },
      },
      this.fields.length
        ? this.fields.map((f) => f.el)
        : h("p", { class: "muted", text: "This function takes no inputs." }),
      h("div", { class: "actions" }, this.runButton, this.cancelButton, this.status),
    );
    // Inputs beside outputs where the panel is wide enough, above them where not.
    this.el = panelSection(
      fnLabel(spec),
      spec.description,
      "generic",
      { fn: spec.name },
      h(
        "div",
        { class: `fn-body${this.outputs.length ? "" : " no-outputs"}` },
        h("div", { class: "fn-inputs" }, form),
        this.outputs.length
          ? h(
              "div",
              { class: "outputs fn-outputs" },
              this.outputs.map((o) => o.el),
            )
          : null,
      ),
    );
    this.navKind = "function";
  }

  setStatus(text, kind = "") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  show(outputs) {
    const list = outputList(outputs, this.outputs.length);
    this.outputs.forEach((output, i) => output.show(list[i]));
  }

  run() {
    const values = [];
    let invalid = null;
    for (const field of this.fields) {
      const result = field.read();
      if (!result.ok) invalid = invalid || field;
      else values.push(result.value);
    }
    if (invalid) {
      this.setStatus("Fix the marked input first.", "error");
      invalid.focus();
      return;
    }
    const started = performance.now();
    const submission = client.call(this.spec.name, values, {
      onQueued: (position) => this.setStatus(`queued, position ${position}`, "busy"),
      onStarted: () => this.setStatus("running…", "busy"),
      onPartial: (outputs) => {
        this.setStatus("receiving…", "busy");
        this.show(outputs);
      },
    });
    this.current = submission;
    this.cancelButton.hidden = false;
    this.setStatus("running…", "busy");
    submission
      .then(
        (outputs) => {
          if (this.current !== submission) return;
          this.show(outputs);
          this.setStatus(`done in ${Math.round(performance.now() - started)} ms`, "ok");
        },
        (error) => {
          if (this.current === submission) this.setStatus(describeError(error), "error");
        },
      )
      .finally(() => {
        if (this.current === submission) {
          this.current = null;
          this.cancelButton.hidden = true;
        }
      });
  }
}

/** A function with a text input and a chatbot output: a conversation. */
class ChatPanel {
  static fits(spec) {
    return spec.outputs.includes("chatbot") && spec.inputs.includes("text");
  }

  constructor(spec) {
    this.spec = spec;
    const labels = spec.labels || [];
    this.textIndex = spec.inputs.indexOf("text");
    this.chatIndex = spec.outputs.indexOf("chatbot");
    this.extra = spec.inputs.map((c, i) =>
      i === this.textIndex ? null : makeField(c, labels[i] || `input ${i + 1}`),
    );
    this.others = spec.outputs.map((c, i) =>
      i === this.chatIndex ? null : makeOutput(c, i, spec.outputs.length),
    );
    this.inFlight = new Set();

    const logEl = h("div", {
      class: "chat-log",
      role: "log",
      "aria-live": "polite",
      "aria-label": "conversation",
      tabindex: "0",
    });
    this.log = new ChatLog(logEl, "No messages yet. Say hello!");

    const inputId = uid("message");
    this.input = h("textarea", {
      id: inputId,
      rows: "1",
      class: "composer-input",
      placeholder: `Message ${fnLabel(spec)}…`,
      enterkeyhint: "send",
      autocomplete: "off",
      "aria-describedby": `${inputId}-hint`,
    });
    this.input.addEventListener("input", () => autosize(this.input));
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.stopButton = h("button", {
      type: "button",
      class: "btn",
      text: "Stop",
      hidden: true,
      on: { click: () => [...this.inFlight].at(-1)?.cancel() },
    });
    const composer = h(
      "form",
      {
        class: "composer",
        novalidate: true,
        on: {
          submit: (event) => {
            event.preventDefault();
            this.send();
          },
        },
      },
      h("label", {
        for: inputId,
        class: "visually-hidden",
        text: labels[this.textIndex] || "message",
      }),
      this.input,
      this.stopButton,
      h("button", { type: "submit", class: "btn primary", text: "Send" }),
    );
    const extras = this.extra.filter(Boolean);
    const others = this.others.filter(Boolean);
    // Starting over is a new session (protocol.md, "Starting over"): the server
    // keeps a chat's history as session state, and a new session starts from
    // the defaults.
    const restart = h("button", {
      type: "button",
      class: "btn small",
      text: "New conversation",
      title: "Start over with an empty conversation (a new session)",
      on: { click: () => startOver() },
    });
    this.el = panelSection(
      fnLabel(spec),
      spec.description,
      "chat",
      { fn: spec.name, actions: restart },
      logEl,
      extras.length
        ? h(
            "div",
            { class: "chat-options" },
            extras.map((f) => f.el),
          )
        : null,
      composer,
      h("p", {
        class: "composer-hint",
        id: `${inputId}-hint`,
        text: "Enter sends, Shift+Enter starts a new line.",
      }),
      others.length
        ? h(
            "div",
            { class: "outputs" },
            others.map((o) => o.el),
          )
        : null,
    );
  }

  send() {
    const text = this.input.value;
    if (!text.trim()) {
      this.input.focus();
      return;
    }
    const values = [];
    for (let i = 0; i < this.spec.inputs.length; i++) {
      if (i === this.textIndex) {
        values.push(text);
        continue;
      }
      const result = this.extra[i].read();
      if (!result.ok) {
        this.extra[i].focus();
        return;
      }
      values.push(result.value);
    }
    this.input.value = "";
    autosize(this.input);
    this.input.focus();
    this.dispatch(text, values);
  }

  dispatch(text, values) {
    const pending = this.log.addPending(text);
    const count = this.spec.outputs.length;
    let streamed = false;
    const submission = client.call(this.spec.name, values, {
      onQueued: (position) => pending.status(`queued, position ${position}`, "queued"),
      onStarted: () => pending.status("thinking…"),
      onPartial: (outputs) => {
        streamed = true;
        pending.resolve();
        this.show(outputList(outputs, count), true);
      },
    });
    this.inFlight.add(submission);
    this.stopButton.hidden = client.protocol < 2;
    submission
      .then(
        (outputs) => {
          pending.resolve();
          this.show(outputList(outputs, count), false);
        },
        (error) => {
          const message = failedMessage(error);
          if (pending.open) pending.fail(message, () => this.dispatch(text, values));
          else if (streamed) {
            this.log.failLast(
              error?.code === Codes.CANCELLED
                ? STOPPED
                : `The reply stopped and was not kept. ${describeError(error)}`,
            );
          }
        },
      )
      .finally(() => {
        this.inFlight.delete(submission);
        if (this.inFlight.size === 0) this.stopButton.hidden = true;
      });
  }

  show(list, busy) {
    this.log.render(list[this.chatIndex], { busy });
    this.others.forEach((output, i) => output?.show(list[i]));
  }

  newSession(when, requested) {
    if (requested) this.log.clear();
    else this.log.archive(when);
  }
}

/**
 * A chat room the app declared (welcome `widgets`, kind "room", protocol 9):
 * its join, say and leave functions, live from the room topic's events.
 */
class RoomPanel {
  static fits(widget, functions) {
    if (!widget || widget.kind !== "room" || typeof widget.topic !== "string") return false;
    if (!widget.topic.includes("{room}")) return false;
    const join = functions.get(widget.join);
    const say = functions.get(widget.say);
    const leave = functions.get(widget.leave);
    return (
      join?.inputs.join() === "text,text" &&
      say?.inputs.join() === "text" &&
      leave?.inputs.length === 0
    );
  }

  constructor(widget, functions) {
    const join = functions.get(widget.join);
    const say = functions.get(widget.say);
    this.fns = { join: widget.join, say: widget.say, leave: widget.leave };
    this.topicOf = (room) => widget.topic.split("{room}").join(room);
    this.navKind = "room";
    this.joined = null; // {name, room, topic}
    this.joining = null; // {topic, events: []} while join_room is in flight
    this.seen = new Set();
    this.messages = [];

    const remembered = storedRoom();
    const nameId = uid("name");
    const roomId = uid("room");
    this.nameInput = h("input", {
      id: nameId,
      autocomplete: "nickname",
      maxlength: "40",
      required: true,
    });
    this.nameInput.value = typeof remembered.name === "string" ? remembered.name : "";
    this.roomInput = h("input", { id: roomId, maxlength: "40", required: true });
    this.roomInput.value = typeof remembered.room === "string" ? remembered.room : "lobby";
    this.joinError = h("p", { class: "field-error", hidden: true });
    this.joinButton = h("button", { type: "submit", class: "btn primary", text: "Join" });
    this.joinForm = h(
      "form",
      {
        class: "join-form",
        novalidate: true,
        on: {
          submit: (event) => {
            event.preventDefault();
            this.join(this.nameInput.value.trim(), this.roomInput.value.trim());
          },
        },
      },
      h(
        "div",
        { class: "field" },
        h("label", { for: nameId, text: (join.labels || [])[0] || "name" }),
        this.nameInput,
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: roomId, text: (join.labels || [])[1] || "room" }),
        this.roomInput,
      ),
      h("div", { class: "actions" }, this.joinButton),
      this.joinError,
    );
    // Who is in the room named in the form, live (its presence is the room
    // topic's current value, protocol 8), before joining it.
    this.previewEl = h("p", { class: "room-preview muted", "aria-live": "polite" });
    this.joinForm.append(this.previewEl);
    this.preview = null; // {topic, subscription}
    this.roomInput.addEventListener("input", () => {
      clearTimeout(this.previewTimer);
      this.previewTimer = setTimeout(() => this.followPreview(), 300);
    });

    const topicTitleId = uid("title");
    this.roomName = h("span", { class: "room-name" });
    this.topicTitle = h(
      "h3",
      { id: topicTitleId },
      h("span", { class: "eyebrow", text: "Room" }),
      " ",
      this.roomName,
    );
    this.whoami = h("p", { class: "muted whoami" });
    this.memberCount = h("span", { class: "member-count" });
    this.memberList = h("ul", { class: "members", "aria-label": "members" });
    this.logEl = h("div", {
      class: "room-log",
      role: "log",
      "aria-live": "polite",
      "aria-label": "messages",
      tabindex: "0",
    });
    this.roomEmpty = h("p", { class: "empty", text: "No messages yet. Say hi!" });
    const sayId = uid("say");
    this.sayInput = h("textarea", {
      id: sayId,
      rows: "1",
      class: "composer-input",
      placeholder: "Message the room…",
      maxlength: "2000",
      enterkeyhint: "send",
      autocomplete: "off",
    });
    this.sayInput.addEventListener("input", () => autosize(this.sayInput));
    this.sayInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.say();
      }
    });
    this.view = h(
      "section",
      { class: "room-view", "aria-labelledby": topicTitleId, hidden: true },
      h(
        "div",
        { class: "room-head" },
        h("div", {}, this.topicTitle, this.whoami),
        h("button", {
          type: "button",
          class: "btn",
          text: "Leave",
          on: { click: () => this.leave() },
        }),
      ),
      h(
        "div",
        { class: "presence", "aria-live": "polite" },
        h("p", { class: "presence-title" }, "In the room: ", this.memberCount),
        this.memberList,
      ),
      this.logEl,
      h(
        "form",
        {
          class: "composer",
          novalidate: true,
          on: {
            submit: (event) => {
              event.preventDefault();
              this.say();
            },
          },
        },
        h("label", {
          for: sayId,
          class: "visually-hidden",
          text: (say.labels || [])[0] || "message",
        }),
        this.sayInput,
        h("button", { type: "submit", class: "btn primary", text: "Send" }),
      ),
    );
    const label =
      typeof widget.label === "string" && widget.label.trim() ? widget.label : "Chat room";
    this.el = panelSection(
      label,
      typeof widget.description === "string" ? widget.description : "",
      "room",
      {},
      this.joinForm,
      this.view,
    );
    this.offEvent = client.on("event", ({ topic, data }) => this.onEvent(topic, data));
    this.followPreview();
  }

  destroy() {
    this.offEvent();
    this.stopPreview();
  }

  followPreview() {
    const room = this.roomInput.value.trim();
    const topic = room ? this.topicOf(room) : null;
    if (this.joined || this.preview?.topic === topic) return;
    this.stopPreview();
    this.previewEl.textContent = "";
    if (!topic) return;
    const subscription = client.subscribe(topic, (data) => {
      if (data?.kind !== "presence" || !Array.isArray(data.members)) return;
      const names = data.members.filter((m) => typeof m === "string");
      this.previewEl.textContent = names.length
        ? `In ${room} now: ${names.join(", ")}`
        : `Nobody is in ${room} now.`;
    });
    subscription.ready.catch(() => {});
    this.preview = { topic, subscription };
  }

  stopPreview() {
    clearTimeout(this.previewTimer);
    if (!this.preview) return;
    this.preview.subscription.unsubscribe();
    this.preview = null;
  }

  async join(name, room, { rejoin = false } = {}) {
    this.joinError.hidden = true;
    if (!name || !room) {
      this.joinError.textContent = "Enter a name and a room.";
      this.joinError.hidden = false;
      (name ? this.roomInput : this.nameInput).focus();
      return;
    }
    if (this.joined && !rejoin) {
      await client.submit(this.fns.leave).catch(() => {});
      this.joined = null;
    }
    const topic = this.topicOf(room);
    const joining = { topic, events: [] };
    this.joining = joining;
    this.stopPreview(); // the session follows the room it joins (server side)
    this.joinButton.disabled = true;
    this.joinButton.textContent = "Joining…";
    try {
      const info = await client.submit(this.fns.join, name, room);
      if (this.joining !== joining) return;
      const actualRoom = typeof info?.room === "string" ? info.room : room;
      this.joined = {
        name: typeof info?.name === "string" ? info.name : name,
        room: actualRoom,
        topic: this.topicOf(actualRoom),
      };
      setStoredRoom({ name, room });
      this.showRoom(info, joining.events, rejoin);
    } catch (error) {
      if (this.joining !== joining) return;
      this.joinError.textContent = `Could not join: ${describeError(error)}`;
      this.joinError.hidden = false;
      this.view.hidden = true;
      this.joinForm.hidden = false;
      this.followPreview();
    } finally {
      if (this.joining === joining) this.joining = null;
      this.joinButton.disabled = false;
      this.joinButton.textContent = "Join";
    }
  }

  showRoom(info, early, rejoin) {
    const { name, room } = this.joined;
    this.roomName.textContent = room;
    this.whoami.textContent = `You are ${name}.`;
    this.messages = [];
    this.seen.clear();
    this.logEl.replaceChildren(this.roomEmpty);
    this.roomEmpty.hidden = false;
    const history = Array.isArray(info?.history) ? info.history : [];
    // Messages published while join_room was in flight arrive as events
    // before its result; they may or may not be in the history.
    const earlyMessages = early.filter((e) => e?.kind === "message");
    for (const message of [...history, ...earlyMessages]) this.addMessage(message, false);
    if (rejoin)
      this.note("The connection was lost and a new session began: you rejoined the room.");
    this.showMembers(Array.isArray(info?.members) ? info.members : [name]);
    const wasHidden = this.view.hidden;
    this.joinForm.hidden = true;
    this.view.hidden = false;
    this.logEl.scrollTop = this.logEl.scrollHeight;
    if (wasHidden && !rejoin) this.sayInput.focus();
  }

  onEvent(topic, data) {
    if (this.joining && topic === this.joining.topic) {
      this.joining.events.push(data);
      return;
    }
    if (!this.joined || topic !== this.joined.topic || !data || typeof data !== "object") return;
    if (data.kind === "message") this.addMessage(data, true);
    else if (data.kind === "presence" && Array.isArray(data.members))
      this.showMembers(data.members);
  }

  note(text) {
    follow(this.logEl, () => this.logEl.append(h("p", { class: "room-note", text })));
  }

  addMessage(message, live) {
    if (!message || typeof message !== "object") return;
    // The server gives each message an id; the fallback key covers servers that do not.
    const key =
      typeof message.id === "string" || typeof message.id === "number"
        ? `id:${message.id}`
        : `${message.at}\u0000${message.name}\u0000${message.text}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const at = typeof message.at === "number" ? new Date(message.at * 1000) : null;
    const mine = this.joined && message.name === this.joined.name;
    const el = h(
      "div",
      { class: `room-msg${mine ? " mine" : ""}` },
      h(
        "div",
        { class: "room-msg-head" },
        h("span", { class: "who", text: asText(message.name) }),
        at ? h("time", { datetime: at.toISOString(), text: clock(at) }) : null,
      ),
      h("p", { class: "body", text: asText(message.text) }),
    );
    follow(
      this.logEl,
      () => {
        const firstPending = this.logEl.querySelector(":scope > .pending");
        this.logEl.insertBefore(el, firstPending);
      },
      live && mine,
    );
    this.messages.push({ key, el });
    this.roomEmpty.hidden = true;
    while (this.messages.length > MAX_ROOM_MESSAGES) {
      const dropped = this.messages.shift();
      dropped.el.remove();
      this.seen.delete(dropped.key);
    }
  }

  showMembers(members) {
    const names = members.map(asText);
    this.memberCount.textContent = String(names.length);
    this.memberList.replaceChildren(
      ...names.map((n) =>
        h(
          "li",
          { class: this.joined && n === this.joined.name ? "me" : "" },
          n,
          this.joined && n === this.joined.name ? hiddenText(" (you)") : null,
        ),
      ),
    );
  }

  async say(retryText) {
    const text = retryText ?? this.sayInput.value;
    if (!text.trim() || !this.joined) return;
    if (retryText === undefined) {
      this.sayInput.value = "";
      autosize(this.sayInput);
    }
    const status = h("span", { class: "meta-text", text: "sending…" });
    const meta = h("div", { class: "msg-meta" }, status);
    const pending = h(
      "div",
      { class: "room-msg mine pending" },
      h("div", { class: "room-msg-head" }, h("span", { class: "who", text: this.joined.name })),
      h("p", { class: "body", text }),
      meta,
    );
    follow(this.logEl, () => this.logEl.append(pending), true);
    try {
      const message = await client.submit(this.fns.say, text);
      pending.remove();
      this.addMessage(message, true);
    } catch (error) {
      markFailed(pending, meta, status, failedMessage(error), () => this.say(text));
    }
  }

  async leave() {
    const joined = this.joined;
    this.joined = null;
    this.joining = null;
    this.view.hidden = true;
    this.joinForm.hidden = false;
    this.nameInput.focus();
    if (joined) await client.submit(this.fns.leave).catch(() => {});
    if (!this.joined && !this.joining) this.followPreview();
  }

  newSession() {
    // The old session left the room when it ended; join again as the same name.
    const joined = this.joined;
    if (joined) {
      this.joined = null;
      this.join(joined.name, joined.room, { rejoin: true });
    }
  }
}

/** A topic from the welcome: its latest event, live. */
class TopicPanel {
  constructor(topic, info = {}) {
    this.topic = topic;
    this.navKind = "live";
    const label = typeof info.label === "string" && info.label.trim() ? info.label : readable(topic);
    this.body = h(
      "div",
      { class: "topic-body", "aria-live": "polite" },
      h("p", { class: "empty", text: "Waiting for the first update…" }),
    );
    this.updated = h("p", { class: "updated muted" });
    const titleId = uid("title");
    this.label = label;
    this.el = h(
      "section",
      { class: "card panel topic", "aria-labelledby": titleId, id: uid("panel"), tabindex: "-1" },
      h(
        "div",
        { class: "panel-head" },
        h(
          "div",
          { class: "topic-title" },
          h("h2", { id: titleId, text: label }),
          label !== topic ? h("code", { class: "fn-name", text: topic }) : null,
          h("span", { class: "live-badge", "aria-hidden": "true", text: "live" }),
        ),
        h("p", {
          class: "description",
          text:
            typeof info.description === "string" && info.description
              ? info.description
              : "Events published on this topic appear here as they happen.",
        }),
      ),
      this.body,
      this.updated,
    );
    this.subscription = client.subscribe(topic, (data) => this.show(data));
    this.subscription.ready.catch((error) => {
      if (error.code !== Codes.CANCELLED) {
        this.body.replaceChildren(
          h("p", {
            class: "field-error",
            text: `Cannot follow this topic: ${describeError(error)}`,
          }),
        );
      }
    });
  }

  show(data) {
    let view;
    const scalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);
    if (Array.isArray(data) && data.every(scalar)) {
      view = data.length
        ? h(
            "ol",
            { class: "leaderboard" },
            data.map((v) => h("li", { text: asText(v) })),
          )
        : h("p", { class: "empty", text: "Nothing yet." });
    } else if (scalar(data)) {
      view = h("p", { class: "big-value", text: asText(data) });
    } else {
      view = h("pre", { class: "value json-value", text: prettyJson(data) });
    }
    this.body.replaceChildren(view);
    this.updated.textContent = `updated ${clock()}`;
  }

  destroy() {
    this.subscription.unsubscribe();
  }
}

// -- the page ----------------------------------------------------------------------------

const page = {
  panels: [],
  manifestKey: null,
  status: document.getElementById("status"),
  detail: document.getElementById("status-detail"),
  retry: document.getElementById("retry"),
  notice: document.getElementById("notice"),
  nav: document.getElementById("fn-nav"),
  panelsEl: document.getElementById("panels"),
  layout: document.getElementById("layout"),
  loading: document.getElementById("loading"),
  session: document.getElementById("session-id"),
  protocol: document.getElementById("protocol"),
  ticker: null,
  rebuilt: false,
  startingOver: false,
};

/**
 * Every function in registration order, as one panel each, except those a
 * declared widget groups (a room, shown where its join function was
 * registered); then the plain topics. A list of them beside (on phones: above)
 * the panels when there are several.
 */
function build(welcome) {
  for (const panel of page.panels) panel.destroy?.();
  page.panels = [];
  const specs = (welcome.functions || []).filter(
    (f) => f && typeof f.name === "string" && Array.isArray(f.inputs) && Array.isArray(f.outputs),
  );
  const functions = new Map(specs.map((f) => [f.name, f]));
  const widgets = (Array.isArray(welcome.widgets) ? welcome.widgets : []).filter((w) =>
    RoomPanel.fits(w, functions),
  );
  const grouped = new Map(); // function name -> the widget it belongs to
  for (const widget of widgets) {
    for (const fn of [widget.join, widget.say, widget.leave]) grouped.set(fn, widget);
  }
  const panels = [];
  for (const spec of specs) {
    const widget = grouped.get(spec.name);
    if (widget) {
      if (widget.join === spec.name) panels.push(new RoomPanel(widget, functions));
    } else if (ChatPanel.fits(spec)) panels.push(new ChatPanel(spec));
    else panels.push(new GenericPanel(spec));
  }
  const info =
    welcome.topic_info && typeof welcome.topic_info === "object" ? welcome.topic_info : {};
  const topics = (welcome.topics || []).filter((t) => typeof t === "string" && !t.includes("*"));
  for (const topic of topics) {
    const details = Object.hasOwn(info, topic) && info[topic] ? info[topic] : {};
    panels.push(new TopicPanel(topic, details));
  }
  page.panels = panels;
  page.panelsEl.replaceChildren(...panels.map((p) => p.el));
  buildNav(panels);
  if (specs.length === 0) {
    page.panelsEl.prepend(
      h("p", { class: "card muted", text: "This app has no functions to call." }),
    );
  }
  page.loading.hidden = true;
}

const NAV_KINDS = { chat: "chat", room: "room", live: "live", function: "" };

function buildNav(panels) {
  const withNav = panels.length >= NAV_MIN_PANELS;
  page.layout.classList.toggle("has-nav", withNav);
  page.nav.hidden = !withNav;
  if (!withNav) {
    page.nav.replaceChildren();
    return;
  }
  const listId = uid("nav");
  const toggle = h("button", {
    type: "button",
    class: "btn small nav-toggle",
    "aria-expanded": "false",
    "aria-controls": listId,
    text: `Jump to… (${panels.length})`,
  });
  const links = panels.map((panel) => {
    const title = panel.el.querySelector("h2")?.textContent || "";
    const kind = NAV_KINDS[panel.navKind] || "";
    const link = h(
      "a",
      { href: `#${panel.el.id}`, class: "nav-link" },
      h("span", { class: "nav-title", text: title }),
      kind ? h("span", { class: "nav-kind", text: kind }) : null,
    );
    link.addEventListener("click", (event) => {
      event.preventDefault();
      for (const other of page.nav.querySelectorAll("[aria-current]"))
        other.removeAttribute("aria-current");
      link.setAttribute("aria-current", "true");
      panel.el.scrollIntoView({ block: "start" });
      panel.el.focus({ preventScroll: true });
      page.nav.classList.remove("open");
      toggle.setAttribute("aria-expanded", "false");
    });
    return h("li", {}, link);
  });
  toggle.addEventListener("click", () => {
    const open = !page.nav.classList.contains("open");
    page.nav.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
  page.nav.replaceChildren(
    h("p", { class: "nav-heading", text: "Functions" }),
    toggle,
    h("ul", { class: "nav-list", id: listId }, links),
  );
}

/** "New conversation": a new session, so every session state starts from its default. */
function startOver() {
  page.startingOver = true;
  client.newSession().catch(() => {
    page.startingOver = false;
  });
}

function showNotice(text) {
  page.notice.replaceChildren(
    h(
      "div",
      { class: "notice-box" },
      h("p", { text }),
      h("button", {
        type: "button",
        class: "btn small",
        text: "Dismiss",
        on: { click: () => page.notice.replaceChildren() },
      }),
    ),
  );
}

function tick() {
  if (client.state !== "reconnecting") return;
  const wait =
    client.nextRetryAt === null ? 0 : Math.ceil((client.nextRetryAt - Date.now()) / 1000);
  page.detail.textContent = wait > 0 ? `next try in ${wait} s` : "trying to reconnect…";
}

client.on("state", ({ state, reason }) => {
  // The indicator says exactly one of three words; the detail next to it says more.
  const word =
    state === "connected" ? "connected" : state === "reconnecting" ? "reconnecting" : "offline";
  if (state !== "connecting") {
    page.status.textContent = word;
    page.status.dataset.state = word;
    document.body.dataset.connection = word;
  }
  clearInterval(page.ticker);
  page.ticker = null;
  page.retry.hidden = !(state === "reconnecting" || state === "offline");
  if (state === "connected") page.detail.textContent = "";
  else if (state === "reconnecting") {
    tick();
    page.ticker = setInterval(tick, 1000);
  } else if (state === "offline") page.detail.textContent = reason || "not connected";
  else if (state === "connecting") page.detail.textContent = "connecting…";
});

client.on("welcome", (welcome) => {
  const title = typeof welcome.title === "string" && welcome.title ? welcome.title : "tether";
  document.getElementById("app-title").textContent = title;
  document.title = title;
  page.protocol.textContent = String(client.protocol);
  const key = JSON.stringify([welcome.functions, welcome.topics || []]);
  page.rebuilt = page.manifestKey !== null && key !== page.manifestKey;
  if (key !== page.manifestKey) {
    page.manifestKey = key;
    build(welcome);
  }
});

client.on("session", ({ id, first, requested }) => {
  page.session.textContent = id.slice(0, 8);
  page.session.title = id;
  if (first) return;
  const when = new Date();
  if (requested && page.startingOver) {
    page.startingOver = false;
    showNotice(
      "Started over: a new session began, so every conversation on this page is empty again.",
    );
    for (const panel of page.panels) panel.newSession?.(when, true);
    return;
  }
  page.startingOver = false;
  showNotice(
    `Reconnected at ${clock(when)}: a new session began. Session state, such as a chat ` +
      "history, lives with the connection, so it starts fresh" +
      (page.rebuilt
        ? ". The server's app changed meanwhile, so the page was rebuilt."
        : "; earlier messages stay on the page, marked as from the earlier session."),
  );
  for (const panel of page.panels) panel.newSession?.(when);
});

client.on("error", (error) => console.warn("tether:", error.code, error.message));

page.retry.addEventListener("click", () => client.reconnectNow());
