// ANSI SGR escape codes (colours, bold, italic, underline) to DOM spans. Text is only ever
// inserted as text nodes; colours are CSS classes (16 colours) or inline styles (256/RGB).

const ESCAPE = /\x1b\[([0-9;:?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b[=>]|[\x00-\x08\x0b-\x1f\x7f]/g;

function color256(n) {
  if (n < 16) return null; // the 16 colours use classes
  if (n < 232) {
    const v = n - 16;
    const level = (x) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${level(Math.floor(v / 36))},${level(Math.floor(v / 6) % 6)},${level(v % 6)})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey},${grey},${grey})`;
}

function emptyState() {
  return { bold: false, faint: false, italic: false, underline: false, fg: null, bg: null };
}

// an extended colour (38;5;n or 38;2;r;g;b) starting at codes[i]: [colour, next index]
function extended(codes, i) {
  if (codes[i + 1] === 5 && codes.length > i + 2) {
    const n = codes[i + 2];
    const css = color256(n);
    return [css === null ? { index: n } : { css }, i + 3];
  }
  if (codes[i + 1] === 2 && codes.length > i + 4) {
    const [r, g, b] = codes.slice(i + 2, i + 5);
    return [{ css: `rgb(${r},${g},${b})` }, i + 5];
  }
  return [null, codes.length];
}

function apply(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  let i = 0;
  while (i < codes.length) {
    const c = codes[i];
    if (c === 0) Object.assign(state, emptyState());
    else if (c === 1) state.bold = true;
    else if (c === 2) state.faint = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) state.bold = state.faint = false;
    else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = { index: c - 30 };
    else if (c >= 90 && c <= 97) state.fg = { index: c - 90 + 8 };
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = { index: c - 40 };
    else if (c >= 100 && c <= 107) state.bg = { index: c - 100 + 8 };
    else if (c === 49) state.bg = null;
    else if (c === 38 || c === 48) {
      const [colour, next] = extended(codes, i);
      if (c === 38) state.fg = colour;
      else state.bg = colour;
      i = next;
      continue;
    }
    i += 1;
  }
}

function span(state, text) {
  const plain =
    !state.bold && !state.faint && !state.italic && !state.underline && !state.fg && !state.bg;
  if (plain) return document.createTextNode(text);
  const el = document.createElement("span");
  const classes = [];
  if (state.bold) classes.push("ansi-bold");
  if (state.faint) classes.push("ansi-faint");
  if (state.italic) classes.push("ansi-italic");
  if (state.underline) classes.push("ansi-underline");
  if (state.fg) {
    if (state.fg.css) el.style.color = state.fg.css;
    else classes.push(`ansi-fg-${state.fg.index}`);
  }
  if (state.bg) {
    if (state.bg.css) el.style.backgroundColor = state.bg.css;
    else classes.push(`ansi-bg-${state.bg.index}`);
  }
  el.className = classes.join(" ");
  el.textContent = text;
  return el;
}

/**
 * Append `text` (one line, escape codes included) to `parent` as text nodes and styled spans.
 * `state` carries the SGR state from line to line (as terminals do); returns it.
 */
export function renderAnsi(parent, text, state = emptyState()) {
  let last = 0;
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(text); m !== null; m = ESCAPE.exec(text)) {
    if (m.index > last) parent.appendChild(span(state, text.slice(last, m.index)));
    if (m[2] === "m") apply(state, m[1]);
    last = ESCAPE.lastIndex;
  }
  if (last < text.length) parent.appendChild(span(state, text.slice(last)));
  return state;
}

export { emptyState as newAnsiState };
