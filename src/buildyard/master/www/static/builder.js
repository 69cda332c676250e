// A builder's page: its builds (paged), pending requests, workers and force forms.

import { builder, list, loadBuilders, one, rpc, worker } from "./api.js";
import { requestRows, workerState } from "./app.js";
import { actionError } from "./session.js";
import { append, badge, debounce, duration, errorBox, formatTime, h, pager, replace, table } from "./dom.js";

/** Rows of builds: number, result, state, started, duration, worker (or builder). */
export async function buildRows(builds, { builderColumn = false } = {}) {
  const names = new Map();
  if (builderColumn) await loadBuilders(builds.map((b) => b.builderid));
  const ids = builderColumn
    ? [...new Set(builds.map((b) => `b${b.builderid}`))]
    : [...new Set(builds.map((b) => `w${b.workerid}`))];
  await Promise.all(
    ids.map(async (key) => {
      const id = Number(key.slice(1));
      try {
        names.set(key, (await (key[0] === "b" ? builder(id) : worker(id))).name);
      } catch {
        names.set(key, String(id));
      }
    }),
  );
  const rows = builds.map((b) =>
    h(
      "tr",
      { dataset: { buildid: String(b.buildid) } },
      h(
        "td",
        {},
        h("a", { href: `#/builders/${b.builderid}/builds/${b.number}` }, `#${b.number}`),
      ),
      h("td", {}, badge(b.results, b.complete)),
      h("td", {}, b.state_string),
      h("td", {}, formatTime(b.started_at)),
      h("td", {}, duration(b.started_at, b.complete_at)),
      builderColumn
        ? h("td", {}, h("a", { href: `#/builders/${b.builderid}` }, names.get(`b${b.builderid}`)))
        : h("td", {}, h("a", { href: `#/workers/${b.workerid}` }, names.get(`w${b.workerid}`))),
    ),
  );
  return table(
    ["Build", "Result", "State", "Started", "Duration", builderColumn ? "Builder" : "Worker"],
    rows,
    { class: "list builds" },
  );
}

const BUILDS_PAGE = 25;

export async function builderPage(page, builderid) {
  const offset = page.offset();
  const b = await one(`builders/${builderid}`, "builders");
  if (page.closed) return;
  const forms = h("div", { class: "force-forms" });
  const builds = h("div");
  const pending = h("div");
  const pendingMessage = h("div", { class: "action-message" });
  const workers = h("div");
  replace(
    page.root,
    h("h1", {}, "Builder ", b.name),
    b.description ? h("p", { class: "muted" }, b.description) : null,
    h("div", {}, (b.tags || []).map((t) => h("span", { class: "tag" }, t))),
    forms,
    h("h2", {}, "Builds"),
    builds,
    h("h2", {}, "Pending build requests"),
    pendingMessage,
    pending,
    h("h2", {}, "Workers"),
    workers,
  );

  const loadBuilds = async () => {
    const { items, total } = await list(`builders/${builderid}/builds`, "builds", {
      order: "-number",
      limit: BUILDS_PAGE,
      offset,
    });
    const rows = items.length ? await buildRows(items) : h("p", { class: "muted" }, "no builds yet");
    if (page.closed) return;
    replace(builds, rows, pager(total, offset, BUILDS_PAGE, (o) => page.href({ offset: o })));
  };
  const loadPending = async () => {
    const { items, total } = await list("buildrequests", "buildrequests", {
      builderid,
      claimed: "false",
      complete: "false",
      order: "buildrequestid",
      limit: 50,
    });
    if (page.closed) return;
    if (!items.length) {
      replace(pending, h("p", { class: "muted" }, "none"));
      return;
    }
    const rows = await requestRows(items, loadPending, pendingMessage);
    if (page.closed) return;
    replace(pending, rows, total > items.length ? h("p", {}, `… and ${total - items.length} more`) : null);
  };
  const loadWorkers = async () => {
    const { items, total } = await list(`builders/${builderid}/workers`, "workers", {
      order: "name",
      limit: 100,
    });
    if (page.closed) return;
    replace(
      workers,
      items.length
        ? h(
            "ul",
            { class: "workers" },
            items.map((w) =>
              h("li", {}, h("a", { href: `#/workers/${w.workerid}` }, w.name), " ", workerState(w)),
            ),
          )
        : h("p", { class: "muted" }, "none"),
      total > items.length ? h("p", {}, `… and ${total - items.length} more`) : null,
    );
  };
  const loadForms = async () => {
    const { items } = await list(`builders/${builderid}/forceschedulers`, "forceschedulers", {
      order: "name",
    });
    if (page.closed) return;
    replace(forms, items.map((s) => forceForm(page, s, builderid)));
  };

  const refreshBuilds = debounce(() => loadBuilds().catch(console.error), 500);
  const refreshPending = debounce(() => loadPending().catch(console.error), 500);
  const refreshWorkers = debounce(() => loadWorkers().catch(console.error), 500);
  page.live(`builders/${builderid}/builds/*/*`, refreshBuilds);
  page.live(`builders/${builderid}/buildrequests/*/*`, refreshPending);
  page.live("workers/*/*", refreshWorkers);
  page.onReconnect(() => {
    refreshBuilds();
    refreshPending();
    refreshWorkers();
  });
  // read once the events are followed, so nothing that changes in between is missed
  await page.subscribed();
  if (page.closed) return;
  await Promise.all([loadForms(), loadBuilds(), loadPending(), loadWorkers()]);
}

// -- force forms -----------------------------------------------------------------------------

/** The input of one field; returns {element, value()} or null for fields not shown. */
function fieldInput(field, inputs, prefix) {
  const id = `${prefix}-${field.fullName}`;
  const label = field.label || field.name;
  let input;
  let value;
  switch (field.type) {
    case "bool":
      input = h("input", { type: "checkbox", id, name: field.fullName, checked: Boolean(field.default) });
      value = () => input.checked;
      break;
    case "int":
      input = h("input", { type: "number", id, name: field.fullName, value: String(field.default ?? "") });
      value = () => input.value;
      break;
    case "textarea":
      input = h("textarea", { id, name: field.fullName, rows: field.rows || 4, cols: field.cols || 40 }, String(field.default ?? ""));
      value = () => input.value;
      break;
    case "list": {
      const defaults = new Set((Array.isArray(field.default) ? field.default : [field.default]).map(String));
      input = h(
        "select",
        { id, name: field.fullName, multiple: field.multiple || undefined },
        (field.choices || []).map((c) => h("option", { value: String(c), selected: defaults.has(String(c)) }, String(c))),
      );
      value = () =>
        field.multiple ? [...input.selectedOptions].map((o) => o.value) : input.value;
      break;
    }
    case "fixed":
      input = h("span", { id, class: "fixed" }, String(field.default ?? ""));
      value = () => field.default;
      break;
    case "file":
      input = h("span", { class: "muted" }, "(file fields are not supported here)");
      value = () => field.default;
      break;
    default: // text, string, username and anything new: a line of text
      input = h("input", {
        type: "text",
        id,
        name: field.fullName,
        value: String(field.default ?? ""),
        size: field.size || 20,
        placeholder: field.type === "username" ? "name <email>" : undefined,
      });
      value = () => input.value;
  }
  const error = h("span", { class: "field-error" });
  inputs.set(field.fullName, { value, error });
  if (field.hide) return null;
  return h(
    "div",
    { class: `field field-${field.type}`, title: field.tooltip || undefined },
    h("label", { for: id }, label),
    input,
    error,
  );
}

function fields(list, inputs, prefix) {
  return list.map((field) => {
    if (field.type === "nested") {
      const children = fields(field.fields || [], inputs, prefix);
      return h(
        "fieldset",
        { class: `nested layout-${field.layout || "vertical"}`, style: `--columns: ${Math.max(1, Number.parseInt(field.columns, 10) || 1)}` },
        field.label ? h("legend", {}, field.label) : null,
        children,
      );
    }
    if (!field.fullName) return null;
    return fieldInput(field, inputs, prefix);
  });
}

function forceForm(page, scheduler, builderid) {
  const inputs = new Map();
  const message = h("div", { class: "force-message" });
  const submit = h("button", { type: "submit", class: "primary" }, scheduler.button_name || "Force");
  const form = h(
    "form",
    {
      class: "force",
      dataset: { scheduler: scheduler.name },
      onsubmit: async (ev) => {
        ev.preventDefault();
        const params = { builderid: String(builderid) };
        for (const [name, input] of inputs) {
          params[name] = input.value();
          input.error.textContent = "";
        }
        submit.disabled = true;
        replace(message, "Submitting…");
        try {
          const result = await rpc(`forceschedulers/${encodeURIComponent(scheduler.name)}`, "force", params);
          const brid = Object.values(result[1] || {})[0];
          replace(message, `Build request ${brid} submitted; waiting for its build…`);
          await followRequest(page, brid, message);
        } catch (err) {
          if (err.data && typeof err.data === "object") {
            for (const [name, text] of Object.entries(err.data)) {
              const input = inputs.get(name);
              if (input) input.error.textContent = String(text);
            }
            replace(message, errorBox({ message: "Please correct the fields." }));
          } else {
            replace(message, actionError(err));
          }
        } finally {
          submit.disabled = false;
        }
      },
    },
    scheduler.label && scheduler.label !== scheduler.button_name ? h("h3", {}, scheduler.label) : null,
    scheduler.enabled === false ? h("p", { class: "muted" }, "This scheduler is disabled.") : null,
    fields(scheduler.all_fields || [], inputs, `force-${scheduler.name}`),
    h("div", { class: "actions" }, submit),
    message,
  );
  return h("details", { class: "force-box", open: true }, h("summary", {}, scheduler.button_name || scheduler.name), form);
}

/** Once the request's build starts, go to its page (the request stays listed until then). */
export async function followRequest(page, brid, message) {
  const deadline = Date.now() + 60_000;
  while (!page.closed && Date.now() < deadline) {
    const { items } = await list(`buildrequests/${brid}/builds`, "builds", {
      field: ["builderid", "number"],
      limit: 1,
    });
    if (items.length) {
      window.location.hash = `#/builders/${items[0].builderid}/builds/${items[0].number}`;
      return;
    }
    const request = await one(`buildrequests/${brid}`, "buildrequests");
    if (request.complete) {
      append(message, [` The request ended without a build (${request.results}).`]);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (!page.closed) append(message, [" It is still pending; see the list below."]);
}
