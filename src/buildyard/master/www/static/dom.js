// DOM helpers: elements built with text nodes only (no data ever goes through innerHTML),
// Buildbot's result names and colours, times, and server-side paging.

/**
 * h("a", {href: "#/x", class: "y", onclick: fn}, "text", child, [more]) -> element.
 * Strings and numbers become text nodes; null/undefined/false children are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Only http(s) and relative links from data are made clickable (no javascript: URLs). */
export function safeUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export const RESULTS = ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED"];

export function resultName(results, complete = true) {
  if (results === null || results === undefined) return complete ? "..." : "RUNNING";
  return RESULTS[results] || `results ${results}`;
}

export function resultClass(results, complete = true) {
  if (results === null || results === undefined) return complete ? "result-none" : "result-pending";
  return `result-${results}`;
}

/** A coloured result badge, data-results carrying the code (tests and CSS read it). */
export function badge(results, complete = true, text = null) {
  return h(
    "span",
    {
      class: `badge ${resultClass(results, complete)}`,
      dataset: { results: results === null || results === undefined ? "" : String(results) },
    },
    text === null ? resultName(results, complete) : text,
  );
}

export function formatTime(epoch) {
  if (epoch === null || epoch === undefined) return "";
  return new Date(epoch * 1000).toLocaleString();
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  return `${hrs}h ${m % 60}m`;
}

export function ago(epoch) {
  if (!epoch) return "";
  return `${formatDuration(Date.now() / 1000 - epoch)} ago`;
}

/**
 * The duration from `start` to `end`; while `end` is null it keeps counting (the page's
 * ticker refreshes every element with data-since).
 */
export function duration(start, end) {
  if (!start) return h("span", { class: "duration" }, "");
  if (end) return h("span", { class: "duration" }, formatDuration(end - start));
  return h(
    "span",
    { class: "duration", dataset: { since: String(start) } },
    formatDuration(Date.now() / 1000 - start),
  );
}

export function tick() {
  for (const el of document.querySelectorAll("[data-since]")) {
    el.textContent = formatDuration(Date.now() / 1000 - Number(el.dataset.since));
  }
}

/** "1–50 of 1000" with previous/next links; hrefFor(offset) gives each page's address. */
export function pager(total, offset, limit, hrefFor) {
  const nav = h("nav", { class: "pager" });
  if (total === 0) return nav;
  const last = Math.min(offset + limit, total);
  append(nav, [
    offset > 0 ? h("a", { href: hrefFor(0) }, "« first") : h("span", { class: "off" }, "« first"),
    offset > 0
      ? h("a", { href: hrefFor(Math.max(0, offset - limit)), rel: "prev" }, "‹ previous")
      : h("span", { class: "off" }, "‹ previous"),
    h("span", { class: "range" }, `${offset + 1}–${last} of ${total}`),
    last < total
      ? h("a", { href: hrefFor(offset + limit), rel: "next" }, "next ›")
      : h("span", { class: "off" }, "next ›"),
    last < total
      ? h("a", { href: hrefFor(Math.floor((total - 1) / limit) * limit) }, "last »")
      : h("span", { class: "off" }, "last »"),
  ]);
  return nav;
}

export function table(headers, rows, attrs = {}) {
  if (!rows.length) return h("p", { class: "muted empty" }, "none");
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows),
  );
}

export function errorBox(err) {
  return h("div", { class: "error" }, err && err.message ? err.message : String(err));
}

/** Call fn at most once per `ms`, the last call winning (for bursts of events). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, ms);
  };
}
