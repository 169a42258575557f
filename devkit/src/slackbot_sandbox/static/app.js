// The sandbox page: a small Slack-like client of the emulated workspace.
//
// It reads the workspace from /api/state, follows changes on the /api/feed event stream, and sends
// what the person does (messages, /research, button clicks, message shortcuts, modals) to the emulator, which signs and
// delivers it to the real bot. No framework, no build step.
//
// Safety rule for every renderer below: text from the workspace is escaped (esc) before any markup
// is added around it; URLs become links only for http(s) and mailto.
"use strict";

// ------------------------------------------------------------------ state

const S = {
  info: null,
  botUser: "UBOT",
  botId: "BBOT",
  users: {}, // id -> {id, name, real_name}
  channels: {}, // id -> {id, name, is_im, members, messages: Map(ts -> message)}
  ephemerals: [], // {key, channel, user, text, blocks, thread_ts, ts, local?}
  dismissed: new Set(),
  me: localStorage.getItem("sandbox.me") || "U_ALICE",
  current: localStorage.getItem("sandbox.channel") || "C_GENERAL",
  thread: null, // {channel, ts}
  loaded: false,
  buffer: [],
  unread: new Set(),
  seq: 0,
  // the agent surface (emulated: slack_agents.py): prompts atop the Messages tab, sessions by thread
  prompts: {}, // DM channel -> {title, prompts: [{title, message}]}
  sessions: {}, // "channel:thread_ts" -> {status, title, stop_button, initiator_user_id}
  modals: {}, // view id -> a modal the bot opened (views.open) for one person, until submitted or closed
};

const BOT_NAME = "Gemini";
const EMOJI = {
  mag: "🔍", hourglass_flowing_sand: "⏳", hourglass: "⌛", white_check_mark: "✅", x: "❌",
  no_entry_sign: "🚫", warning: "⚠️", heavy_check_mark: "✔️", tada: "🎉", eyes: "👀", rocket: "🚀",
  thumbsup: "👍", "+1": "👍", thumbsdown: "👎", "-1": "👎", heart: "❤️", smile: "😄", slightly_smiling_face: "🙂",
  wave: "👋", memo: "📝", robot_face: "🤖", sparkles: "✨", thinking_face: "🤔", bulb: "💡", fire: "🔥",
  page_facing_up: "📄", link: "🔗", raised_hand: "✋", clock1: "🕐", stopwatch: "⏱️", information_source: "ℹ️", books: "📚",
};
// Icons are inline SVG, not emoji: emoji are empty boxes where no emoji font is installed.
const SVG = (body) => `<svg viewBox="0 0 24 24" width="1em" height="1em" fill="none" stroke="currentColor" `
  + `stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${body}</svg>`;
const ICONS = {
  attach: SVG('<path d="M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l7.9-7.9"/>'),
  file: SVG('<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5M9 13h6M9 17h6"/>'),
  gear: SVG('<circle cx="12" cy="12" r="3"/><path d="M12 2v3M12 19v3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M2 12h3M19 12h3M4.9 19.1L7 17M17 7l2.1-2.1"/>'),
  sparkle: SVG('<path fill="currentColor" stroke="none" d="M12 2c.6 4.8 3.2 9.4 10 10-6.8.6-9.4 5.2-10 10-.6-4.8-3.2-9.4-10-10 6.8-.6 9.4-5.2 10-10z"/>'),
  hourglass: SVG('<path d="M6 2h12M6 22h12M7 2c0 5 5 6 5 10s-5 5-5 10M17 2c0 5-5 6-5 10s5 5 5 10"/>'),
  memo: SVG('<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13 7l4 4"/>'),
  search: SVG('<circle cx="11" cy="11" r="7"/><path d="M21 21l-5-5"/>'),
  check: SVG('<circle cx="12" cy="12" r="10" fill="#2bac76" stroke="none"/><path d="M7 12.5l3 3 7-7" stroke="#fff"/>'),
  cross: SVG('<circle cx="12" cy="12" r="10" fill="#cd2553" stroke="none"/><path d="M8 8l8 8M16 8l-8 8" stroke="#fff"/>'),
  blocked: SVG('<circle cx="12" cy="12" r="9" stroke="#cd2553"/><path d="M5.6 5.6l12.8 12.8" stroke="#cd2553"/>'),
  warning: SVG('<path d="M12 3l10 18H2z" fill="#ecb22e" stroke="none"/><path d="M12 10v5M12 18v.5" stroke="#1d1c1d"/>'),
  hand: SVG('<path d="M8 13V5.5a1.5 1.5 0 0 1 3 0V12M11 11V4a1.5 1.5 0 0 1 3 0v7M14 11V5.5a1.5 1.5 0 0 1 3 0V14c0 4-2.5 7-6 7s-5-1.5-6.5-4L3 13.5a1.5 1.5 0 0 1 2.5-1.6L8 15"/>'),
  link: SVG('<path d="M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"/>'),
  thumbs_up: SVG('<path d="M7 10v11H3V10zM7 10l4-8a2.5 2.5 0 0 1 3 2.5V9h5.5a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.1 21H7"/>'),
  thumbs_down: SVG('<path d="M17 14V3h4v11zM17 14l-4 8a2.5 2.5 0 0 1-3-2.5V15H4.5a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 5.9 3H17"/>'),
};
// the shortcodes the bot itself writes (research status lines) and a few common ones, drawn as icons
const EMOJI_ICONS = {
  hourglass_flowing_sand: "hourglass", hourglass: "hourglass", memo: "memo", mag: "search", white_check_mark: "check",
  heavy_check_mark: "check", x: "cross", no_entry_sign: "blocked", warning: "warning", page_facing_up: "file",
  link: "link", raised_hand: "hand",
};
function icon(name, cls = "icon") {
  return el("span", { class: cls, html: ICONS[name] });
}
// "80 B", "1.2 KB", "3.4 MB": one decimal below ten units, as a file browser shows sizes
function formatSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let n = Math.max(0, Number(bytes) || 0), u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u += 1; }
  const shown = u === 0 ? String(Math.round(n)) : n < 10 ? n.toFixed(1).replace(/\.0$/, "") : String(Math.round(n));
  return `${shown} ${units[u]}`;
}
const COLORS = ["#e8912d", "#2bac76", "#4a7fd4", "#cd2553", "#8c5bd0", "#1f9aa8"];

// ------------------------------------------------------------------ helpers

const $ = (sel, root = document) => root.querySelector(sel);
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
const unent = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const SLOT = /\u0000(\d+)\u0000/g;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v; // only ever given output of the escaping renderers or ICONS
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function tsKey(ts) {
  const [whole, frac = "0"] = String(ts).split(".");
  return [Number(whole), Number(frac.padEnd(6, "0").slice(0, 6))];
}
function cmpTs(a, b) {
  const [x1, y1] = tsKey(a), [x2, y2] = tsKey(b);
  return x1 - x2 || y1 - y2;
}
function nowTs() {
  const us = Date.now() * 1000 + (S.seq++ % 1000);
  return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, "0")}`;
}
function timeOf(ts) {
  return new Date(tsKey(ts)[0] * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function fullTimeOf(ts) {
  return new Date(tsKey(ts)[0] * 1000).toLocaleString();
}
function safeHref(url) {
  const u = String(url).trim();
  return /^(https?:\/\/|mailto:)/i.test(u) ? u : null;
}
function link(href, labelHtml) {
  const canvas = canvasPath(href);
  return canvas ? `<a class="canvas-link" href="${esc(canvas)}" target="_blank" rel="noopener">${labelHtml}</a>`
    : `<a href="${esc(href)}" target="_blank" rel="noopener noreferrer">${labelHtml}</a>`;
}
// A canvas link (the workspace's /docs/<team>/<canvas id>) opens the sandbox's canvas view, as Slack's
// client opens its canvas viewer: the emulator itself serves only the raw Markdown.
function canvasPath(href) {
  const base = S.info?.slack_emulator_url;
  if (!base || !href.startsWith(`${base}/docs/`)) return null;
  const m = href.slice(base.length).match(/^\/docs\/(T[A-Z0-9]{1,32})\/(F[A-Z0-9]{1,32})$/);
  return m ? `/docs/${m[1]}/${m[2]}` : null;
}
function userName(id) {
  if (id === S.botUser) return "bot";
  return S.users[id]?.name || id;
}
function realName(id) {
  if (id === S.botUser) return BOT_NAME;
  return S.users[id]?.real_name || S.users[id]?.name || id;
}
function colorOf(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}
function avatar(id, { small = false, system = false } = {}) {
  const cls = `avatar${small ? " small" : ""}`;
  if (system) return el("span", { class: `${cls} system`, "aria-hidden": "true", html: ICONS.gear });
  if (id === S.botUser) return el("span", { class: `${cls} bot`, "aria-hidden": "true", html: ICONS.sparkle });
  const a = el("span", { class: cls, "aria-hidden": "true" }, realName(id).slice(0, 1).toUpperCase());
  a.style.background = colorOf(id);
  return a;
}
function emojify(escaped) {
  return escaped.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI_ICONS[name]
    ? `<span class="emoji-icon" role="img" aria-label="${m}">${ICONS[EMOJI_ICONS[name]]}</span>` : EMOJI[name] ?? m);
}

// ------------------------------------------------------------------ Markdown (the bot's markdown blocks)

// Inline: code spans, links and URLs are cut out first (their content escaped on its own), then the
// rest is escaped, then emphasis markers become tags, then the cut-out pieces go back in.
function inlineMd(raw) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = String(raw).replace(/\u0000/g, "");
  s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, _t, code) => keep(`<code>${esc(code)}</code>`));
  s = s.replace(/\[([^\]\n]+)\]\(\s*<?([^\s()<>]+(?:\([^\s()<>]*\)[^\s()<>]*)*)>?(?:\s+"[^"\n]*")?\s*\)/g,
    (_, label, url) => {
      const href = safeHref(url);
      return keep(href ? link(href, inlineMd(label)) : inlineMd(label));
    });
  s = s.replace(/<((?:https?:\/\/|mailto:)[^\s<>]+)>/gi, (_, url) => keep(link(url, esc(url))));
  s = s.replace(/\bhttps?:\/\/[^\s<>()\u0000]+(?:\([^\s<>()]*\))?[^\s<>()\u0000.,;:!?'"*_~\]]?/gi, (url) => {
    const tidy = url.replace(/[.,;:!?'"*_~\]]+$/, "");
    return keep(link(tidy, esc(tidy))) + url.slice(tidy.length);
  });
  s = esc(s);
  s = s.replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(?<![\w])__(?=\S)([\s\S]*?\S)__(?![\w])/g, "<strong>$1</strong>");
  s = s.replace(/(?<![*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, "<em>$1</em>");
  s = s.replace(/(?<![\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w])/g, "<em>$1</em>");
  s = s.replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  s = emojify(s);
  for (let i = 0; i < 5 && s.includes("\u0000"); i++) s = s.replace(SLOT, (_, n) => slots[Number(n)]);
  return s;
}

const FENCE_RE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING_RE = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const HR_RE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const LIST_RE = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE_RE = /^ {0,3}>/;
const TABLE_SEP_RE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && TABLE_SEP_RE.test(lines[i + 1])
    && (lines[i + 1].includes("|") || lines[i].trim().startsWith("|"));
}
function startsBlock(lines, i) {
  const l = lines[i];
  return FENCE_RE.test(l) || HEADING_RE.test(l) || HR_RE.test(l) || LIST_RE.test(l) || QUOTE_RE.test(l)
    || isTableStart(lines, i);
}
function splitRow(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function parseList(lines, i) {
  const first = lines[i].match(LIST_RE);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const start = ordered ? parseInt(first[2], 10) : 1;
  const items = [];
  while (i < lines.length) {
    const line = lines[i];
    const m = line.match(LIST_RE);
    if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
      items.push({ text: [m[3]], children: [] });
      i++;
    } else if (m && m[1].length > indent && items.length) {
      const [html, next] = parseList(lines, i);
      items[items.length - 1].children.push(html);
      i = next;
    } else if (!m && line.trim() && items.length && line.match(/^\s*/)[0].length > indent) {
      items[items.length - 1].text.push(line.trim());
      i++;
    } else if (!line.trim()) {
      let j = i;
      while (j < lines.length && !lines[j].trim()) j++;
      const n = j < lines.length && lines[j].match(LIST_RE);
      if (n && n[1].length >= indent && (n[1].length > indent || /\d/.test(n[2]) === ordered)) i = j;
      else break;
    } else {
      break;
    }
  }
  const tag = ordered ? "ol" : "ul";
  const startAttr = ordered && start !== 1 ? ` start="${start}"` : "";
  const body = items.map((it) => `<li>${it.text.map(inlineMd).join("<br>")}${it.children.join("")}</li>`).join("");
  return [`<${tag}${startAttr}>${body}</${tag}>`, i];
}

function mdBlocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) { i++; continue; }
    if ((m = line.match(FENCE_RE))) {
      const close = new RegExp(`^ {0,3}${m[1][0] === "`" ? "`" : "~"}{${m[1].length},}\\s*$`);
      const body = [];
      for (i++; i < lines.length && !close.test(lines[i]); i++) body.push(lines[i]);
      i++;
      const lang = m[2] ? ` data-lang="${esc(m[2])}"` : "";
      out.push(`<pre class="code"${lang}><code>${esc(body.join("\n"))}</code></pre>`);
    } else if ((m = line.match(HEADING_RE))) {
      const level = m[1].length;
      out.push(`<h${level}>${inlineMd(m[2] || "")}</h${level}>`);
      i++;
    } else if (HR_RE.test(line)) {
      out.push("<hr>");
      i++;
    } else if (isTableStart(lines, i)) {
      const head = splitRow(line);
      const aligns = splitRow(lines[i + 1]).map((c) =>
        c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : "");
      const cell = (tag, text, k) => `<${tag}${aligns[k] ? ` style="text-align:${aligns[k]}"` : ""}>${inlineMd(text)}</${tag}>`;
      const rows = [];
      for (i += 2; i < lines.length && lines[i].trim() && lines[i].includes("|"); i++) {
        const cells = splitRow(lines[i]);
        rows.push(`<tr>${head.map((_, k) => cell("td", cells[k] ?? "", k)).join("")}</tr>`);
      }
      out.push(`<div class="table-wrap"><table><thead><tr>${head.map((h, k) => cell("th", h, k)).join("")}</tr></thead>`
        + `<tbody>${rows.join("")}</tbody></table></div>`);
    } else if (QUOTE_RE.test(line)) {
      const inner = [];
      for (; i < lines.length && QUOTE_RE.test(lines[i]); i++) inner.push(lines[i].replace(/^ {0,3}> ?/, ""));
      out.push(`<blockquote>${mdBlocks(inner).join("")}</blockquote>`);
    } else if (LIST_RE.test(line)) {
      const [html, next] = parseList(lines, i);
      out.push(html);
      i = next;
    } else {
      const para = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines, i); i++) para.push(lines[i].trim());
      out.push(`<p>${para.map(inlineMd).join("<br>")}</p>`);
    }
  }
  return out;
}

function renderMarkdown(src) {
  return mdBlocks(String(src ?? "").replace(/\r\n?/g, "\n").replace(/\u0000/g, "").split("\n")).join("");
}

// ------------------------------------------------------------------ Slack mrkdwn (people's text, Block Kit)

function slackToken(tok) {
  const [target, label] = (() => {
    const k = tok.indexOf("|");
    return k < 0 ? [tok, ""] : [tok.slice(0, k), tok.slice(k + 1)];
  })();
  if (target.startsWith("@")) {
    const id = target.slice(1);
    const me = id === S.me ? " me" : "";
    return `<span class="mention${me}" data-user="${esc(id)}">@${esc(id in S.users || id === S.botUser ? userName(id) : unent(label) || id)}</span>`;
  }
  if (target.startsWith("#")) {
    const ch = S.channels[target.slice(1)];
    return `<span class="channel-ref">#${esc(ch ? ch.name : unent(label) || target.slice(1))}</span>`;
  }
  if (target.startsWith("!")) {
    const name = target.slice(1).split("^")[0];
    return `<span class="mention">@${esc(unent(label) || name)}</span>`;
  }
  const href = safeHref(unent(target));
  const text = esc(unent(label || target).replace(/^mailto:/, ""));
  return href ? link(href, text) : text;
}

function mrkdwn(raw) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = String(raw ?? "").replace(/\u0000/g, "");
  s = s.replace(/```\n?([\s\S]*?)```/g, (_, code) => keep(`<pre class="code"><code>${esc(unent(code))}</code></pre>`));
  s = s.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${esc(unent(code))}</code>`));
  s = s.replace(/<([^<>\n]+)>/g, (_, tok) => keep(slackToken(tok)));
  s = s.replace(/\bhttps?:\/\/[^\s<>\u0000]+[^\s<>\u0000.,;:!?'")\]]/gi, (url) => keep(link(unent(url), esc(unent(url)))));
  s = esc(unent(s));
  s = s.replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g, "$1<strong>$2</strong>");
  s = s.replace(/(^|[^\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])/g, "$1<em>$2</em>");
  s = s.replace(/(^|[^\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])/g, "$1<del>$2</del>");
  s = emojify(s);
  // quotes: consecutive lines starting with ">"
  const out = [];
  let quote = null;
  for (const line of s.split("\n")) {
    const q = line.match(/^&gt; ?(.*)$/);
    if (q) {
      (quote ??= []).push(q[1]);
      continue;
    }
    if (quote) { out.push(`<blockquote>${quote.join("<br>")}</blockquote>`); quote = null; }
    out.push(line + "\n");
  }
  if (quote) out.push(`<blockquote>${quote.join("<br>")}</blockquote>`);
  s = out.join("").replace(/\n$/, "").replace(/\n/g, "<br>");
  for (let i = 0; i < 5 && s.includes("\u0000"); i++) s = s.replace(SLOT, (_, n) => slots[Number(n)]);
  return s;
}

// ------------------------------------------------------------------ Block Kit

function textObject(t) {
  if (!t) return "";
  if (typeof t === "string") return mrkdwn(t);
  return t.type === "mrkdwn" ? mrkdwn(t.text) : emojify(esc(t.text)).replace(/\n/g, "<br>");
}

function button(elem, ctx) {
  const label = elem.text?.text ?? elem.action_id ?? "Button";
  const b = el("button", {
    type: "button", class: `block-button${elem.style ? ` ${elem.style}` : ""}`,
    "data-action-id": elem.action_id, "data-value": elem.value ?? "",
  }, label);
  if (!ctx.ts) {
    b.disabled = true;
  } else {
    b.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      b.disabled = true;
      b.textContent = `${label}…`;
      try {
        await api("/api/click", { channel: ctx.channel, ts: ctx.ts, action_id: elem.action_id, value: elem.value, user: S.me });
      } catch (err) {
        note(ctx.channel, ctx.thread_ts, `The click did not reach the bot: ${err.message}`);
      } finally { // as in Slack, the button is there again once the app has the click (e.g. Edit plan)
        b.disabled = false;
        b.textContent = label;
      }
    });
  }
  return b;
}

// 👍 / 👎 (feedback_buttons): a click reaches the bot as block_actions through the emulator
function feedbackButtons(elem, ctx) {
  const one = (side, rating) => {
    const b = el("button", { type: "button", class: "block-button feedback-button", "data-rating": rating,
      title: elem[side]?.accessibility_label || rating, "aria-label": elem[side]?.accessibility_label || rating });
    b.append(icon(rating === "positive" ? "thumbs_up" : "thumbs_down")); // the emoji, drawn (fonts may lack it)
    b.disabled = !ctx.ts;
    b.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      b.closest(".feedback").querySelectorAll("button").forEach((x) => x.classList.toggle("chosen", x === b));
      try {
        await api("/api/feedback", { channel: ctx.channel, ts: ctx.ts, rating, user: S.me });
      } catch (err) {
        note(ctx.channel, ctx.thread_ts, `The rating did not reach the bot: ${err.message}`);
      }
    });
    return b;
  };
  return el("span", { class: "feedback-buttons" }, one("positive_button", "positive"), one("negative_button", "negative"));
}

// Task cards of a native stream (task_update chunks): what each tool step is doing, never in the text
const TASK_MARK = { pending: "○", in_progress: "◐", complete: "✓", error: "✕" };
function taskCards(stream) {
  const tasks = stream?.tasks || [];
  if (!tasks.length && !stream?.plan_title) return null;
  return el("div", { class: "task-cards" },
    stream.plan_title ? el("div", { class: "plan-title" }, stream.plan_title) : null,
    tasks.map((t) => el("div", { class: `task-card ${t.status}`, "data-task": t.id, "data-status": t.status },
      el("span", { class: "task-mark", "aria-label": t.status }, TASK_MARK[t.status] || "•"),
      el("span", { class: "task-title" }, t.title),
      t.details ? el("span", { class: "task-details" }, t.details) : null,
      (t.sources || []).length ? el("span", { class: "task-sources" }, t.sources.map((src) =>
        el("a", { href: safeHref(src.url) || "#", target: "_blank", rel: "noopener noreferrer" }, src.text || src.url)))
        : null)));
}

// A Slack table block: the first row reads as the header, as Slack draws it.
function tableCellText(cell) {
  if (cell?.type === "raw_text") return cell.text ?? "";
  const texts = [];
  const walk = (node) => {
    if (!node || typeof node !== "object") return;
    if (typeof node.text === "string") texts.push(node.text);
    (node.elements || []).forEach(walk);
  };
  walk(cell);
  return texts.join("");
}

function tableBlock(b) {
  const rows = Array.isArray(b.rows) ? b.rows : [];
  const aligns = (b.column_settings || []).map((c) => c?.align || "");
  const cell = (tag, c, k) => el(tag, aligns[k] ? { style: `text-align:${aligns[k]}` } : {}, tableCellText(c));
  const table = el("table", { class: "block-table" },
    el("thead", {}, el("tr", {}, (rows[0] || []).map((c, k) => cell("th", c, k)))),
    el("tbody", {}, rows.slice(1).map((r) => el("tr", {}, r.map((c, k) => cell("td", c, k))))));
  return el("div", { class: "table-wrap" }, table);
}

function renderBlocks(blocks, fallback, ctx) {
  const box = el("div", { class: "text" });
  if (!Array.isArray(blocks) || !blocks.length) {
    box.innerHTML = mrkdwn(fallback);
    return box;
  }
  let usedFallback = false;
  for (const b of blocks) {
    switch (b.type) {
      case "markdown":
        box.append(el("div", { class: "md", html: renderMarkdown(b.text) }));
        break;
      case "section": {
        const sec = el("div", { class: "block-section" });
        const body = el("div", { class: "block-text", html: textObject(b.text) });
        if (Array.isArray(b.fields)) {
          body.append(el("div", { class: "block-fields" }, b.fields.map((f) => el("div", { html: textObject(f) }))));
        }
        sec.append(body);
        if (b.accessory?.type === "button") sec.append(button(b.accessory, ctx));
        box.append(sec);
        break;
      }
      case "context":
        box.append(el("div", { class: "block-context" }, (b.elements || []).map((e) =>
          e.type === "image" ? el("span", {}, `[${e.alt_text || "image"}]`) : el("span", { html: textObject(e) }))));
        break;
      case "header":
        box.append(el("div", { class: "block-header", html: textObject(b.text) }));
        break;
      case "divider":
        box.append(el("hr"));
        break;
      case "actions":
        box.append(el("div", { class: "block-actions" }, (b.elements || []).map((e) =>
          e.type === "button" ? button(e, ctx) : el("span", { class: "block-button", "aria-disabled": "true" },
            e.placeholder?.text || e.type))));
        break;
      case "table":
        box.append(tableBlock(b));
        break;
      case "context_actions": // feedback buttons under an agent's answer
        box.append(el("div", { class: "block-actions feedback" }, (b.elements || []).map((e) =>
          e.type === "feedback_buttons" ? feedbackButtons(e, ctx) : null)));
        break;
      default: // rich_text, image...: Slack's fallback text says the same
        if (!usedFallback && fallback) {
          box.append(el("div", { html: mrkdwn(fallback) }));
          usedFallback = true;
        }
    }
  }
  return box;
}

// ------------------------------------------------------------------ messages

function replyInfo(channel, ts) {
  const replies = [...channel.messages.values()].filter((m) => m.thread_ts === ts && m.ts !== ts);
  replies.sort((a, b) => cmpTs(a.ts, b.ts));
  return replies;
}

function messageNode(m, { inThread = false, compact = false } = {}) {
  // An ephemeral's `user` is who sees it; the app sent it, so it shows as the app's, as in Slack.
  const isBot = Boolean(m.bot_id) || m.user === S.botUser || Boolean(m.ephemeral && !m.local);
  const who = m.local ? "system" : isBot ? S.botUser : m.user;
  const name = m.local ? "Sandbox" : realName(who);
  const ctx = { channel: m.channel, ts: m.ephemeral ? null : m.ts, thread_ts: m.thread_ts || null };
  const topLevel = !inThread && !m.ephemeral;
  const node = el("div", {
    class: ["message", isBot ? "bot" : "user", m.ephemeral ? "ephemeral" : "", compact ? "compact" : "",
      topLevel ? "top-level" : ""].filter(Boolean).join(" "),
    "data-ts": m.ephemeral ? null : m.ts, "data-key": m.key || m.ts, "data-user": who, "data-channel": m.channel,
  });
  node.append(avatar(who, { system: m.local }));
  const body = el("div", { class: "body" });
  body.append(el("div", { class: "meta" },
    el("span", { class: "name" }, name),
    isBot || m.local ? el("span", { class: "app-tag" }, "APP") : null,
    el("time", { datetime: new Date(tsKey(m.ts)[0] * 1000).toISOString(), title: fullTimeOf(m.ts) }, timeOf(m.ts))));
  if (m.ephemeral) {
    body.append(el("div", { class: "ephemeral-label" }, "Only visible to you",
      el("a", { class: "dismiss", role: "button", onclick: (ev) => { ev.stopPropagation(); S.dismissed.add(m.key); render(); } },
        "Dismiss")));
  }
  const cards = taskCards(m.stream);
  if (cards) body.append(cards);
  body.append(renderBlocks(m.blocks, m.text, ctx));
  if (m.stream?.state === "streaming") body.append(streamCursor());
  if (m.files?.length) {
    body.append(el("div", { class: "files" }, m.files.map(fileCard)));
  }
  if (m.reactions?.length) {
    body.append(el("div", { class: "reactions" }, m.reactions.map((r) =>
      el("span", { class: "reaction", title: r.users.map(userName).join(", ") }, `${EMOJI[r.name] || `:${r.name}:`} ${r.count}`))));
  }
  if (topLevel) {
    const channel = S.channels[m.channel];
    const replies = channel ? replyInfo(channel, m.ts) : [];
    if (replies.length) {
      const people = [...new Set(replies.map((r) => (r.bot_id ? S.botUser : r.user)))].slice(0, 4);
      body.append(el("div", { class: "thread-summary" },
        people.map((p) => avatar(p, { small: true })),
        el("button", { type: "button", class: "thread-link", "data-ts": m.ts },
          `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`),
        el("span", { class: "last-reply" }, `Last reply ${timeOf(replies[replies.length - 1].ts)}`)));
    }
    node.append(el("button", { type: "button", class: "reply-action", title: "Reply in thread" }, "Reply in thread"));
    node.addEventListener("click", (ev) => {
      if (ev.target.closest("a, .block-button") || String(window.getSelection() || "")) return;
      openThread(m.channel, m.ts);
    });
  }
  // the app's message shortcuts on any message, in the channel and in a thread, as Slack's "More actions" offers them
  if (!m.ephemeral && !m.local) node.append(shortcutMenu(m));
  node.append(body);
  return node;
}

// manifest.yml's message shortcuts (from /api/info); these when the page's server cannot read the manifest
const DEFAULT_SHORTCUTS = [
  { callback_id: "ask_gemini", name: "Ask Gemini about this message" },
  { callback_id: "summarize_thread", name: "Summarize thread" },
  { callback_id: "research_thread", name: "Research this thread" },
  { callback_id: "forget_thread", name: "Forget this thread" },
];

function closeMenus(except = null) {
  for (const open of document.querySelectorAll(".shortcuts.open")) {
    if (open === except) continue;
    open.classList.remove("open");
    open.querySelector(".shortcut-menu").hidden = true;
    open.querySelector(".more-actions").setAttribute("aria-expanded", "false");
  }
}

// A message's "⋯" button and its menu: each shortcut goes to the bot as Slack sends it (a message_action with
// the message, through the emulator); the bot answers in the thread, with an ephemeral line, or with a modal.
function shortcutMenu(m) {
  const where = m.thread_ts && m.thread_ts !== m.ts ? m.thread_ts : null;
  const run = async (callbackId) => {
    closeMenus();
    try {
      const r = await api("/api/shortcut", { channel: m.channel, ts: m.ts, callback_id: callbackId, user: S.me });
      const d = r.delivery || {};
      if (d.status !== 200) note(m.channel, where, `The shortcut did not reach the bot (${d.status ? `HTTP ${d.status}` : d.error || "no answer"}).`);
    } catch (err) {
      note(m.channel, where, `The shortcut did not reach the bot: ${err.message}`);
    }
  };
  const menu = el("div", { class: "shortcut-menu", role: "menu", hidden: true },
    (S.info?.shortcuts || DEFAULT_SHORTCUTS).map((s) => el("button", { type: "button", role: "menuitem", class: "shortcut",
      "data-shortcut": s.callback_id, title: s.description || null,
      onclick: (ev) => { ev.stopPropagation(); run(s.callback_id); } }, s.name)));
  const holder = el("span", { class: "shortcuts" });
  const toggle = el("button", { type: "button", class: "more-actions", title: "More actions", "aria-label": "More actions",
    "aria-haspopup": "menu", "aria-expanded": "false", onclick: (ev) => {
      ev.stopPropagation();
      const opening = !holder.classList.contains("open");
      closeMenus();
      holder.classList.toggle("open", opening);
      menu.hidden = !opening;
      toggle.setAttribute("aria-expanded", String(opening));
    } }, "⋯");
  holder.append(toggle, menu);
  return holder;
}

// The app's Messages tab: the suggested prompts at its top (set by the bot when the tab opens)
function promptBar(c) {
  const set = S.prompts[c.id];
  if (!c.is_im || !set?.prompts?.length) return null;
  return { key: `prompts:${c.id}`, version: JSON.stringify(set), build: () => el("div", { class: "suggested-prompts" },
    el("div", { class: "prompts-title" }, set.title || "Suggested prompts"),
    el("div", { class: "prompts" }, set.prompts.map((p) => el("button", { type: "button", class: "prompt",
      title: p.message, onclick: () => send(p.message, { channel: c.id, threadTs: null }) }, p.title)))) };
}

// An agent session (a thread of the Messages tab): Slack shows its title, "Working…" and its own Stop
function sessionBar(channel, threadTs) {
  const s = S.sessions[`${channel}:${threadTs}`];
  if (!s) return null;
  const label = { processing: "Working…", active: "Active", suspended: "Waiting for you", closed: "Closed" }[s.status] || s.status;
  return el("div", { class: `session-bar ${s.status}`, "data-status": s.status },
    el("span", { class: "session-title" }, s.title || "New chat"),
    el("span", { class: "session-status" }, label),
    s.stop_button && s.status === "processing" && s.initiator_user_id === S.me
      ? el("button", { type: "button", class: "session-stop", onclick: () =>
        api("/api/stop_session", { channel, thread_ts: threadTs, user: S.me }).catch((err) =>
          note(channel, threadTs, `Stop did not reach the bot: ${err.message}`)) }, "Stop") : null);
}

function setSession(s) {
  S.sessions[`${s.channel}:${s.thread_ts}`] = s;
}

// ------------------------------------------------------------------ rendering

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSidebar();
    renderChannel();
    renderThread();
    renderModal();
  });
}

function myDm() {
  return Object.values(S.channels).find((c) => c.is_im && c.members.includes(S.me) && c.members.includes(S.botUser));
}

function renderSidebar() {
  const chans = Object.values(S.channels).filter((c) => !c.is_im).sort((a, b) => a.name.localeCompare(b.name));
  const item = (c, label, extra) => el("li", {}, el("button", {
    type: "button", "data-channel": c.id, "aria-current": String(c.id === S.current),
    class: S.unread.has(c.id) && c.id !== S.current ? "unread" : "",
    onclick: () => selectChannel(c.id),
  }, label, extra));
  $("#channel-list").replaceChildren(...chans.map((c) => item(c, [el("span", { class: "hash" }, "#"), c.name],
    c.members.includes(S.botUser) ? null : el("span", { class: "note", title: "The bot is not a member" }, "no bot"))));
  const dm = myDm();
  $("#dm-list").replaceChildren(...(dm ? [item(dm, [avatar(S.botUser, { small: true }), BOT_NAME],
    el("span", { class: "note" }, "app"))] : []));
  const select = $("#user-select");
  const users = Object.values(S.users);
  if (select.options.length !== users.length) {
    select.replaceChildren(...users.map((u) => el("option", { value: u.id }, `${u.real_name} (@${u.name})`)));
  }
  select.value = S.me;
  $("#me-avatar").replaceWith(Object.assign(avatar(S.me, { small: true }), { id: "me-avatar" }));
}

function channelLabel(c) {
  return c.is_im ? BOT_NAME : `# ${c.name}`;
}

function ephemeralsFor(channel, threadTs) {
  return S.ephemerals.filter((e) => e.channel === channel && e.user === S.me && !S.dismissed.has(e.key)
    && (threadTs ? e.thread_ts === threadTs : !e.thread_ts));
}

function renderChannel() {
  const c = S.channels[S.current];
  const list = $("#messages");
  if (!c) return;
  $("#channel-title").textContent = channelLabel(c);
  $("#channel-meta").textContent = c.is_im
    ? "The app's Messages tab: every message is a conversation of its own"
    : `${c.members.filter((m) => m !== S.botUser).length} people${c.members.includes(S.botUser)
      ? " · the bot is a member" : " · the bot is not in this channel"}`;
  $("#composer").placeholder = c.is_im ? `Message ${BOT_NAME}` : `Message #${c.name}`;
  const top = [...c.messages.values()].filter((m) => !m.thread_ts || m.thread_ts === m.ts);
  const items = [...top, ...ephemeralsFor(c.id, null)].sort((a, b) => cmpTs(a.ts, b.ts));
  const prompts = promptBar(c);
  if (!items.length) {
    reconcile(list, [prompts, { key: `welcome:${c.id}:${S.me}`, build: () => welcome(c) }].filter(Boolean));
    return;
  }
  let prev = null;
  reconcile(list, [...(prompts ? [prompts] : []), ...items.map((m) => {
    const compact = Boolean(prev && !prev.ephemeral && !m.ephemeral && sender(prev) === sender(m)
      && tsKey(m.ts)[0] - tsKey(prev.ts)[0] < 300 && !replyInfo(c, prev.ts).length);
    prev = m;
    const replies = replyInfo(c, m.ts);
    const version = JSON.stringify([m.text, m.blocks, m.files, m.reactions, m.edit_count, compact, S.me,
      replies.length, replies.length ? replies[replies.length - 1].ts : "", replies.map(sender), m.stream]);
    return { key: m.key || m.ts, version, build: () => messageNode(m, { compact }) };
  })]);
}

// ------------------------------------------------------------------ native streams and thread status

// A native stream (chat.startStream) shows a cursor while it grows; assistant.threads.setStatus shows
// "<app> is thinking…" under the thread with its loading messages rotating, until it is cleared.
const THREAD_STATUS = new Map(); // "channel:thread_ts" -> {status, loading_messages, time}

function streamCursor() {
  return el("span", { class: "stream-cursor", style: "opacity:.6" }, "▍");
}

function setThreadStatus(s) {
  const key = `${s.channel}:${s.thread_ts}`;
  if (s.status) THREAD_STATUS.set(key, s);
  else THREAD_STATUS.delete(key);
}

function statusRow(channel, threadTs) {
  const s = THREAD_STATUS.get(`${channel}:${threadTs}`);
  if (!s) return null;
  const loading = s.loading_messages || [];
  return { key: `status:${s.time}`, version: "", build: () => el("div",
    { class: "thread-status", style: "padding:4px 20px 8px 60px;color:#616061;font-size:13px", "data-i": "0",
      "data-loading": JSON.stringify(loading) },
    el("div", { style: "font-style:italic" }, `${BOT_NAME} ${s.status}`),
    loading.length ? el("div", { class: "status-loading", style: "font-size:12px" }, loading[0]) : null) };
}

setInterval(() => { // Slack rotates the loading messages
  for (const node of document.querySelectorAll(".thread-status[data-loading]")) {
    const list = JSON.parse(node.dataset.loading);
    const line = node.querySelector(".status-loading");
    if (list.length < 2 || !line) continue;
    node.dataset.i = String((Number(node.dataset.i) + 1) % list.length);
    line.textContent = list[Number(node.dataset.i)];
  }
}, 2500);

function sender(m) {
  return m.local ? "system" : m.bot_id || m.ephemeral ? S.botUser : m.user;
}

function renderThread() {
  const pane = $("#thread-pane");
  const t = S.thread;
  const c = t && S.channels[t.channel];
  const parent = c && c.messages.get(t.ts);
  if (!parent) {
    pane.hidden = true;
    $("#app").classList.remove("thread-open");
    return;
  }
  pane.hidden = false;
  $("#app").classList.add("thread-open");
  $("#thread-channel").textContent = c.is_im ? BOT_NAME : `#${c.name}`;
  const replies = replyInfo(c, t.ts);
  const items = [parent, ...replies, ...ephemeralsFor(c.id, t.ts)].sort((a, b) => cmpTs(a.ts, b.ts));
  const rows = [];
  items.forEach((m, i) => {
    rows.push({ key: m.key || m.ts, version: JSON.stringify([m.text, m.blocks, m.files, m.reactions, m.edit_count, S.me,
      m.stream]),
      build: () => messageNode(m, { inThread: true }) });
    if (i === 0) {
      const n = replies.length;
      rows.push({ key: `divider:${n}`, build: () => el("div", { class: "replies-divider" },
        n ? `${n} ${n === 1 ? "reply" : "replies"}` : "No replies yet") });
    }
  });
  const status = statusRow(c.id, t.ts);
  if (status) rows.push(status);
  const session = S.sessions[`${c.id}:${t.ts}`];
  if (session) rows.unshift({ key: "session", version: JSON.stringify([session, S.me]), build: () => sessionBar(c.id, t.ts) });
  reconcile($("#thread-messages"), rows);
}

// Keyed update of a list: unchanged rows keep their DOM (and the reader's scroll position).
function reconcile(container, rows) {
  const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 120;
  const old = new Map([...container.children].map((n) => [n.dataset.rowKey, n]));
  const wanted = rows.map((r) => {
    let node = old.get(r.key);
    if (!node || node.dataset.rowVersion !== (r.version ?? "")) {
      const fresh = r.build();
      fresh.dataset.rowKey = r.key;
      fresh.dataset.rowVersion = r.version ?? "";
      if (node) node.replaceWith(fresh);
      node = fresh;
    }
    old.delete(r.key);
    return node;
  });
  for (const n of old.values()) n.remove();
  wanted.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
  });
  if (nearBottom || container.dataset.stick === "1") {
    container.scrollTop = container.scrollHeight;
    container.dataset.stick = "";
  }
}

// what the emulator answers with a realistic block (emulators/showcase.py): [question, what it shows]
const SHOWCASE = [
  ["compare databases in a table", "a Markdown table becomes a Slack table block"],
  ["write a function that retries a request", "a fenced code block"],
  ["search the latest news on heat pumps", "an answer with its sources listed under it"],
  ["calculate the mean and plot it", "a code run with its output and plot"],
  ["show off some markdown", "headings, lists, a table, code and a quote in one answer"],
];

function welcome(c) {
  const tip = (label, text, fill) => el("button", { type: "button", class: "tip", onclick: () => {
    const box = $("#composer");
    box.value = fill;
    box.focus();
    autosize(box);
  } }, label, el("small", {}, text));
  const botHere = c.members.includes(S.botUser);
  return el("div", { class: "welcome" },
    el("h3", {}, c.is_im ? `This is your direct message with ${BOT_NAME}` : `This is the very beginning of #${c.name}`),
    el("p", {}, c.is_im
      ? "This is the app's Messages tab: every message starts a conversation of its own, answered in its thread "
        + "(reply there to go on). Try a suggested prompt above."
      : botHere ? "Mention the bot to ask Gemini. It answers in a thread, and replies in that thread continue the conversation."
        : "The bot is not a member of this channel, so mentions here are not delivered to it (as in Slack). /research still works."),
    el("div", { class: "tips" },
      botHere && !c.is_im ? tip("@bot what is a good name for a sandbox?", "a mention streams an answer into a thread",
        "@bot what is a good name for a sandbox?") : null,
      c.is_im ? tip("Explain Redis Lua scripts in two sentences", "DMs need no mention",
        "Explain Redis Lua scripts in two sentences") : null,
      ...(S.info?.gemini === "emulator" && (botHere || c.is_im) ? SHOWCASE.map(([ask, what]) => {
        const fill = c.is_im ? ask : `@bot ${ask}`;
        return tip(fill, what, fill);
      }) : []),
      tip("/research What changed in EU AI Act enforcement in 2026?", "a Deep Research job with a status message and Cancel",
        "/research What changed in EU AI Act enforcement in 2026?"),
      tip("/research status", "your research jobs (only visible to you)", "/research status"),
      tip("/gemini", "the profile (model, tools, instructions) in effect here, only visible to you", "/gemini")),
    S.info?.gemini === "emulator" ? el("p", { class: "emulator-note" },
      "Gemini is emulated here: ask for a table, code, a list, sources (\"search …\"), a calculation or "
      + "\"markdown\" to see how each renders; anything else is echoed as \"Reply N to: <your message>\", where N "
      + "counts the turns the bot chained in this conversation. Set GEMINI_API_KEY to talk to the real API.") : null);
}

// ------------------------------------------------------------------ workspace state + live feed

function messageFrom(raw) {
  return { ...raw, channel: raw.channel };
}

function loadState(state) {
  S.botUser = state.bot_user_id || S.botUser;
  S.botId = state.bot_id || S.botId;
  S.users = Object.fromEntries((state.users || []).map((u) => [u.id, u]));
  S.channels = {};
  for (const c of state.channels || []) {
    const messages = new Map((c.messages || []).map((m) => [m.ts, messageFrom({ ...m, channel: c.id })]));
    S.channels[c.id] = { id: c.id, name: c.name, is_im: c.is_im, members: c.members || [], messages };
  }
  THREAD_STATUS.clear();
  (state.thread_statuses || []).forEach(setThreadStatus);
  const agents = state.agentsurface || {};
  S.prompts = { ...(agents.prompts || {}) };
  S.sessions = {};
  (agents.sessions || []).filter(Boolean).forEach(setSession);
  S.modals = Object.fromEntries(((state.views || {}).open || []).map((v) => [v.id, v]));
  const keepLocal = S.ephemerals.filter((e) => e.local);
  S.ephemerals = (state.ephemerals || []).map((e) => ephemeralFrom(e, lastTs(e.channel, e.thread_ts)));
  S.ephemerals.push(...keepLocal);
  if (!S.users[S.me]) S.me = Object.keys(S.users)[0] || S.me;
  if (!S.channels[S.current]) S.current = "C_GENERAL" in S.channels ? "C_GENERAL" : Object.keys(S.channels)[0];
  if (S.channels[S.current]?.is_im && !S.channels[S.current].members.includes(S.me)) S.current = myDm()?.id || "C_GENERAL";
}

function lastTs(channel, threadTs) {
  const c = S.channels[channel];
  let last = "0.000000";
  for (const m of c ? c.messages.values() : []) {
    if ((threadTs ? m.thread_ts === threadTs || m.ts === threadTs : true) && cmpTs(m.ts, last) > 0) last = m.ts;
  }
  const [w, f] = tsKey(last);
  return `${w}.${String(f + 1).padStart(6, "0")}`;
}

function ephemeralFrom(e, ts) {
  return { ...e, ephemeral: true, ts: ts || nowTs(), key: `eph:${S.seq++}` };
}

function applyEvent(ev) {
  if (ev.type === "reset") {
    refresh();
    return;
  }
  if (ev.type === "ephemeral") {
    S.ephemerals.push(ephemeralFrom(ev, nowTs()));
  } else if (ev.type === "message_deleted") {
    S.channels[ev.channel]?.messages.delete(ev.ts);
  } else if ((ev.type === "message" || ev.type === "message_changed") && ev.ts && ev.channel) {
    const c = S.channels[ev.channel];
    if (!c) return;
    const known = c.messages.get(ev.ts);
    if (known && (known.edit_count || 0) > (ev.edit_count || 0)) return; // an older view
    c.messages.set(ev.ts, messageFrom(ev));
    if (!known && ev.channel !== S.current && (!ev.thread_ts || ev.thread_ts === ev.ts)) S.unread.add(ev.channel);
  } else if (ev.type === "status") {
    setThreadStatus(ev);
  } else if (ev.type === "suggested_prompts") {
    S.prompts[ev.channel] = ev;
  } else if (ev.type === "session") {
    setSession(ev);
  } else if (ev.type === "modal" && ev.view) {
    S.modals[ev.id] = ev.view;
  } else if (ev.type === "modal_closed") {
    delete S.modals[ev.id];
  } else {
    return; // files show up through their messages
  }
  render();
}

async function refresh() {
  S.loaded = false;
  try {
    const state = await getJSON("/api/state");
    loadState(state);
    const seen = (state.ephemerals || []).map((e) => JSON.stringify([e.channel, e.user, e.text, e.thread_ts, e.via]));
    for (const ev of S.buffer.splice(0)) {
      if (ev.type === "ephemeral") {
        const k = seen.indexOf(JSON.stringify([ev.channel, ev.user, ev.text, ev.thread_ts, ev.via]));
        if (k >= 0) { seen.splice(k, 1); continue; } // already in the state we loaded
      }
      applyEvent(ev);
    }
    S.loaded = true;
    $("#messages").dataset.stick = "1";
    if (!S.told) { // the page opened on this conversation: Slack tells the app
      S.told = true;
      tellTheApp(S.current);
    }
    render();
  } catch (err) {
    setConn("down", `state: ${err.message}`);
    setTimeout(refresh, 2000);
  }
}

function setConn(state, title) {
  const c = $("#conn");
  c.dataset.state = state;
  c.textContent = state === "live" ? "live" : state === "down" ? "reconnecting…" : "connecting…";
  if (title) c.title = title;
}

function connect() {
  const feed = new EventSource("/api/feed");
  feed.onopen = () => {
    setConn("live", "Live updates from the emulated workspace");
    S.buffer = [];
    refresh(); // after every (re)connection: events may have been missed
  };
  feed.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    if (S.loaded) applyEvent(ev);
    else S.buffer.push(ev);
  };
  feed.onerror = () => setConn("down", "The feed dropped; the browser reconnects by itself");
}

// ------------------------------------------------------------------ talking to the sandbox server

async function getJSON(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
  return resp.json();
}

async function api(path, body) {
  const resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

function note(channel, threadTs, text) {
  S.ephemerals.push({ ...ephemeralFrom({ channel, user: S.me, text, thread_ts: threadTs || null }, nowTs()), local: true });
  render();
}

// What a Slack client sends: &, <, > escaped; "@bot" and "@alice" turned into mention tokens.
function toSlackText(text) {
  let s = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  s = s.replace(/(^|[^\w@])@(bot|gemini)\b/gi, (_, pre) => `${pre}<@${S.botUser}>`);
  for (const u of Object.values(S.users)) {
    s = s.replace(new RegExp(`(^|[^\\w@<])@${u.name}\\b`, "gi"), (_, pre) => `${pre}<@${u.id}>`);
  }
  return s;
}

async function send(text, { channel, threadTs }) {
  const trimmed = text.trim();
  if (!trimmed) return;
  const slash = trimmed.match(/^(\/[\w-]+)(?:\s+([\s\S]*))?$/);
  if (slash) {
    const [, command, args = ""] = slash;
    const known = S.info?.commands; // manifest.yml's slash commands (null: unknown, the bot decides)
    if (known && !known.some((c) => c.command === command)) {
      note(channel, threadTs, `\`${command}\` is not a command of this app. Try ${known.map((c) => `\`${c.command}\``).join(" or ")}.`);
      return;
    }
    const r = await api("/api/slash_command", { command, text: args.trim(), user: S.me, channel });
    if (r.delivery && r.delivery.status !== 200) {
      note(channel, threadTs, `The bot did not accept \`${command}\` (HTTP ${r.delivery.status}${r.delivery.error ? `: ${r.delivery.error}` : ""}).`);
    }
    return;
  }
  const slackText = toSlackText(trimmed);
  const r = await api("/api/user_message", { channel, text: slackText, user: S.me, thread_ts: threadTs || undefined });
  const mentioned = slackText.includes(`<@${S.botUser}>`);
  const delivery = r.delivery || {};
  if (mentioned && delivery.status === 0 && /not in the channel/.test(delivery.error || "")) {
    note(channel, threadTs, `${BOT_NAME} is not a member of #${S.channels[channel]?.name}, so your mention was not delivered to it. `
      + "Try #general or your direct messages with the app.");
  } else if (delivery.status && delivery.status !== 200) {
    note(channel, threadTs, `The bot answered the event with HTTP ${delivery.status}; Slack would retry it.`);
  } else if (delivery.status === 0 && delivery.error && !/not in the channel/.test(delivery.error)) {
    note(channel, threadTs, `The event did not reach the bot: ${delivery.error}`);
  }
}

// ------------------------------------------------------------------ UI actions

// What Slack tells the app as the person moves: opening its Messages tab, or looking at a channel
function tellTheApp(id) {
  const c = S.channels[id];
  if (!c) return;
  const told = c.is_im ? api("/api/app_home", { user: S.me, tab: "messages" }) : api("/api/app_context", { user: S.me, channel: id });
  told.catch(() => {}); // not subscribed, or no agent view: nothing to tell
}

function selectChannel(id) {
  tellTheApp(id);
  S.current = id;
  S.unread.delete(id);
  localStorage.setItem("sandbox.channel", id);
  if (S.thread && S.thread.channel !== id) S.thread = null;
  $("#messages").dataset.stick = "1";
  render();
  $("#composer").focus();
}

function openThread(channel, ts) {
  S.thread = { channel, ts };
  $("#thread-messages").dataset.stick = "1";
  render();
  requestAnimationFrame(() => $("#thread-composer").focus());
}

function autosize(box) {
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

function wireComposer(formSel, boxSel, where) {
  const form = $(formSel);
  const box = $(boxSel);
  wireAttachments(form, box);
  const submit = async () => {
    const text = box.value;
    if (!text.trim() && !attached(box).length) return;
    const target = where();
    if (!target) return;
    box.value = "";
    autosize(box);
    try {
      const files = takeAttached(box);
      await (files.length ? sendWithFiles(text, target, files) : send(text, target));
    } catch (err) {
      box.value = text;
      autosize(box);
      note(target.channel, target.threadTs, `Could not send: ${err.message}`);
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  box.addEventListener("input", () => autosize(box));
}

async function loadInfo() {
  try {
    S.info = await getJSON("/api/info");
  } catch {
    return;
  }
  const i = S.info;
  S.botUser = i.bot_user_id || S.botUser;
  const g = $("#badge-gemini");
  g.textContent = `Gemini: ${i.gemini_label}`;
  g.dataset.kind = i.gemini;
  g.title = i.gemini === "real"
    ? `The real Gemini API (${i.gemini_model}): answers cost quota`
    : `The Interactions API emulator at ${i.gemini_emulator_url}: tables, code, lists and sources when asked for `
      + 'by name, else "Reply N to: <your message>"';
  if (i.commands) {
    $("#command-hints").replaceChildren(...i.commands.map((c) => el("span", { title: c.description },
      el("kbd", {}, c.command), c.usage_hint ? " " : "", c.usage_hint ? el("i", {}, c.usage_hint) : "")));
  }
  const r = $("#badge-redis");
  r.textContent = `Redis: ${i.redis_label}`;
  r.dataset.kind = i.redis;
  r.title = i.redis === "url" ? "REDIS_URL answered; the sandbox's keys are deleted when it stops"
    : "REDIS_URL did not answer: an in-process store (fakeredis) runs the same Lua scripts";
}

document.addEventListener("DOMContentLoaded", () => {
  wireComposer("#composer-form", "#composer", () => ({ channel: S.current, threadTs: null }));
  wireComposer("#thread-composer-form", "#thread-composer", () => S.thread && ({ channel: S.thread.channel, threadTs: S.thread.ts }));
  $("#thread-close").addEventListener("click", () => { S.thread = null; render(); });
  $("#messages").addEventListener("click", (ev) => {
    const linkEl = ev.target.closest(".thread-link");
    if (linkEl) {
      ev.stopPropagation();
      openThread(S.current, linkEl.dataset.ts);
    }
  });
  $("#user-select").addEventListener("change", (ev) => {
    S.me = ev.target.value;
    localStorage.setItem("sandbox.me", S.me);
    if (S.channels[S.current]?.is_im) S.current = myDm()?.id || "C_GENERAL";
    S.thread = S.thread && S.channels[S.thread.channel]?.is_im ? null : S.thread;
    render();
  });
  document.addEventListener("click", () => closeMenus()); // a click elsewhere closes an open "More actions" menu
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.querySelector(".shortcuts.open")) closeMenus();
    else if (ev.key === "Escape" && myModal()) closeModal(myModal());
    else if (ev.key === "Escape" && S.thread) { S.thread = null; render(); }
  });
  loadInfo().then(connect);
});

// for debugging in the browser console
window.sandbox = { state: S, renderMarkdown, mrkdwn };

// ------------------------------------------------------------------ attachments (files people share)
// A file is attached with the paperclip button or by dropping it on a composer; it is sent with the message
// as Slack does (a `file_share` message whose event carries `files`), and the bot downloads it from
// the emulator with its token like any Slack file.

const ATTACHED = new WeakMap(); // composer textarea -> File[]

function attached(box) {
  return ATTACHED.get(box) || [];
}

function takeAttached(box) {
  const files = attached(box);
  ATTACHED.set(box, []);
  renderAttached(box);
  return files;
}

function attach(box, files) {
  ATTACHED.set(box, [...attached(box), ...files]);
  renderAttached(box);
  box.focus();
}

function renderAttached(box) {
  const row = box.closest("form").previousElementSibling;
  if (!row || !row.classList.contains("attachments")) return;
  row.replaceChildren(...attached(box).map((f, i) => el("span", { class: "attachment", "data-name": f.name },
    icon("attach"), `${f.name} · ${formatSize(f.size)}`,
    el("button", { type: "button", class: "icon-button", title: `Remove ${f.name}`, "aria-label": `Remove ${f.name}`,
      onclick: () => { ATTACHED.set(box, attached(box).filter((_, j) => j !== i)); renderAttached(box); } }, "×"))));
  row.hidden = !attached(box).length;
}

function wireAttachments(form, box) {
  const picker = el("input", { type: "file", multiple: "", hidden: "", class: "file-input" });
  picker.addEventListener("change", () => { attach(box, [...picker.files]); picker.value = ""; });
  const button = el("button", { type: "button", class: "attach", title: "Attach a file", "aria-label": "Attach a file",
    onclick: () => picker.click(), html: ICONS.attach });
  form.prepend(button, picker);
  form.before(el("div", { class: "attachments", hidden: "" }));
  const pane = form.closest("main, aside") || form;
  pane.addEventListener("dragover", (ev) => {
    if (![...(ev.dataTransfer?.types || [])].includes("Files")) return;
    ev.preventDefault();
    form.classList.add("dropping");
  });
  pane.addEventListener("dragleave", (ev) => { if (!pane.contains(ev.relatedTarget)) form.classList.remove("dropping"); });
  pane.addEventListener("drop", (ev) => {
    if (!ev.dataTransfer?.files?.length) return;
    ev.preventDefault();
    form.classList.remove("dropping");
    attach(box, [...ev.dataTransfer.files]);
  });
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(reader.error || new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function sendWithFiles(text, { channel, threadTs }, files) {
  const payload = await Promise.all(files.map(async (f) => ({ name: f.name, mimetype: f.type || "", data: await readBase64(f) })));
  const r = await api("/api/share", { channel, text: toSlackText(text.trim()), user: S.me, thread_ts: threadTs || undefined,
    files: payload });
  const delivery = r.delivery || {};
  if (delivery.status === 0 && delivery.error) note(channel, threadTs, `The message did not reach the bot: ${delivery.error}`);
  else if (delivery.status && delivery.status !== 200) note(channel, threadTs, `The bot answered the event with HTTP ${delivery.status}.`);
}

const IMAGE_TYPES = /^image\/(png|jpeg|gif|webp|bmp)$/;

function fileCard(f) {
  const id = /^[A-Za-z0-9]+$/.test(f.id || "") ? f.id : "";
  const href = id ? `/api/files/${id}` : null;
  const size = `${f.name || ""} · ${formatSize(f.size)}`;
  if (href && IMAGE_TYPES.test(f.mimetype || "")) {
    return el("a", { class: "file-card image", href, target: "_blank", rel: "noopener", "data-file": id },
      el("img", { class: "file-thumb", src: href, alt: f.alt_txt || f.title || f.name || "image", loading: "lazy" }),
      el("div", { class: "file-size" }, size));
  }
  return el("a", { class: "file-card", href, target: "_blank", rel: "noopener", "data-file": id },
    icon("file", "file-icon"),
    el("span", {}, el("div", { class: "file-name" }, f.title || f.name || "file"), el("div", { class: "file-size" }, size)));
}

// ------------------------------------------------------------------ modals (views.open)
// The bot opens a modal with the trigger of a person's click (Edit plan) or shortcut (Research this thread); the
// emulator keeps it open for that person and tells the page. Text inputs and checkboxes are drawn, optional or
// not; Submit sends what was typed and ticked back as Slack does: a signed view_submission to the bot (through
// the emulator), and the bot's ack decides whether it closes.

function myModal() {
  const mine = Object.values(S.modals).filter((v) => v.user === S.me);
  return mine[mine.length - 1] || null;
}

function renderModal() {
  const root = $("#modal-root");
  const view = myModal();
  if (!view) {
    root.replaceChildren();
    return;
  }
  if (root.firstElementChild?.dataset.viewId === view.id) return; // keep what the person is typing
  root.replaceChildren(modalNode(view));
  requestAnimationFrame(() => root.querySelector("textarea, input.modal-input")?.focus());
}

function modalInput(block) {
  const e = block.element || {};
  const attrs = { class: "modal-input", "data-block-id": block.block_id, "data-action-id": e.action_id,
    placeholder: e.placeholder?.text, maxlength: e.max_length, minlength: e.min_length, id: `input-${block.block_id}`,
    required: !block.optional }; // Slack's client checks these before it sends anything
  const field = e.type === "plain_text_input" && e.multiline ? el("textarea", { ...attrs, rows: 8 })
    : el("input", { ...attrs, type: "text" });
  field.value = e.initial_value ?? "";
  return field;
}

// A checkboxes element: each option's text and description as text (never markup), ticked as initial_options say
function modalCheckboxes(block) {
  const e = block.element || {};
  const ticked = new Set((e.initial_options || []).map((o) => o.value));
  return el("div", { class: "modal-checkboxes", role: "group", "aria-labelledby": `label-${block.block_id}`,
    "data-block-id": block.block_id, "data-action-id": e.action_id, "data-required": block.optional ? null : "1" },
  (e.options || []).map((o, i) => {
    const id = `check-${block.block_id}-${i}`;
    return el("div", { class: "modal-option" },
      el("input", { type: "checkbox", id, value: o.value, checked: ticked.has(o.value) }),
      el("label", { for: id }, el("span", { class: "option-text" }, o.text?.text || ""),
        o.description ? el("span", { class: "option-description" }, o.description.text || "") : null));
  }));
}

function modalNode(view) {
  const title = view.title?.text || "";
  const form = el("form", { class: "modal", role: "dialog", "aria-modal": "true", "aria-label": title,
    "data-view-id": view.id, "data-callback-id": view.callback_id || "" });
  const body = el("div", { class: "modal-body" });
  for (const b of view.blocks || []) {
    if (b.type === "input") {
      const boxes = b.element?.type === "checkboxes";
      body.append(el("div", { class: "modal-block", "data-block-id": b.block_id },
        el(boxes ? "div" : "label", { for: boxes ? null : `input-${b.block_id}`, id: `label-${b.block_id}`,
          class: "modal-label" }, b.label?.text || "", b.optional ? el("span", { class: "optional" }, " (optional)") : null),
        boxes ? modalCheckboxes(b) : modalInput(b), b.hint ? el("div", { class: "modal-hint" }, b.hint.text || "") : null,
        el("div", { class: "modal-error", role: "alert" })));
    } else {
      body.append(renderBlocks([b], "", {})); // sections, context...: drawn as in messages, no live buttons
    }
  }
  const status = el("div", { class: "modal-status", role: "status" });
  const cancel = el("button", { type: "button", class: "block-button modal-close" }, view.close?.text || "Cancel");
  cancel.addEventListener("click", () => closeModal(view));
  const submit = view.submit
    ? el("button", { type: "submit", class: "block-button primary modal-submit" }, view.submit.text || "Submit") : null;
  form.append(el("div", { class: "modal-header" }, el("h2", { class: "modal-title" }, title),
    el("button", { type: "button", class: "icon-button", "aria-label": "Close", onclick: () => closeModal(view) }, "×")),
  body, el("div", { class: "modal-footer" }, status, cancel, submit));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submitModal(view, form); });
  return el("div", { class: "modal-overlay", "data-view-id": view.id }, form);
}

// What Slack's client sends: each text input's value (an empty one as untouched: null), each checkboxes input's
// ticked options. A required group with nothing ticked is stopped here, as Slack's client stops it.
async function submitModal(view, form) {
  const values = {};
  form.querySelectorAll(".modal-input").forEach((f) => { if (f.value) values[f.dataset.blockId] = f.value; });
  form.querySelectorAll(".modal-error").forEach((e) => { e.textContent = ""; });
  let missing = false;
  form.querySelectorAll(".modal-checkboxes").forEach((g) => {
    values[g.dataset.blockId] = [...g.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
    if (g.dataset.required && !values[g.dataset.blockId].length) {
      g.closest(".modal-block").querySelector(".modal-error").textContent = "Please select an option.";
      missing = true;
    }
  });
  if (missing) return;
  const status = form.querySelector(".modal-status");
  const submit = form.querySelector(".modal-submit");
  submit.disabled = true;
  status.textContent = "Sending…";
  try {
    const r = await api("/api/view_submission", { view_id: view.id, values, user: S.me });
    if (r.closed) {
      delete S.modals[view.id];
      render();
      return;
    }
    for (const [blockId, message] of Object.entries(r.errors || {})) {
      const box = [...form.querySelectorAll(".modal-block")].find((b) => b.dataset.blockId === blockId);
      if (box) box.querySelector(".modal-error").textContent = message;
    }
    const d = r.delivery || {};
    status.textContent = Object.keys(r.errors || {}).length ? ""
      : `The app did not accept it (${d.status ? `HTTP ${d.status}` : d.error || "no answer"}); try again.`;
  } catch (err) {
    status.textContent = `Could not send: ${err.message}`;
  }
  submit.disabled = false;
}

function closeModal(view) {
  delete S.modals[view.id];
  render();
  api("/api/view_close", { view_id: view.id, user: S.me }).catch(() => {}); // already gone there: nothing to do
}
