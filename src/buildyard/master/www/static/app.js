// The built-in UI: a hash router (#/builders, #/builders/3/builds/7, ...) over plain DOM pages.
// Every list is read one page at a time from the server (limit/offset, meta.total), and pages
// follow the master's events on /ws, reloading only what an event concerns.

import { builder, events, list, loadBuilders, one, rpc, worker } from "./api.js";
import { buildPage } from "./build.js";
import { builderPage, buildRows } from "./builder.js";
import { actionError, autoLogin, loadSession, renderUser } from "./session.js";
import {
  ago,
  append,
  badge,
  debounce,
  errorBox,
  formatTime,
  h,
  pager,
  replace,
  safeUrl,
  table,
  tick,
} from "./dom.js";

/** What a page owns: its element, its event subscriptions and timers, ended on navigation. */
export class Page {
  constructor(root, query) {
    this.root = root;
    this.query = query;
    this.cleanups = [];
    this.closed = false;
  }

  /** Follow the events of `path` while the page lives; returns a function to stop earlier. */
  live(path, callback) {
    const stop = events.subscribe(path, (key, message) => {
      if (!this.closed) callback(key, message);
    });
    this.cleanups.push(stop);
    return stop;
  }

  onReconnect(callback) {
    this.cleanups.push(events.onReconnect(() => !this.closed && callback()));
  }

  /** Resolves once the server sends this page's events (see Events.subscribed). */
  subscribed() {
    return events.subscribed();
  }

  every(ms, callback) {
    const timer = setInterval(() => !this.closed && callback(), ms);
    this.cleanups.push(() => clearInterval(timer));
  }

  /** One error box at the top of the page (null clears it). */
  showError(err) {
    if (!this.errorSlot || !this.errorSlot.isConnected) {
      if (!err) return;
      this.errorSlot = h("div", { class: "page-error" });
      this.root.prepend(this.errorSlot);
    }
    if (err) console.error(err);
    replace(this.errorSlot, err ? errorBox(err) : null);
  }

  close() {
    this.closed = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  /** The current address with some query parameters changed (for pagers and filters). */
  href(changes) {
    const q = new URLSearchParams(this.query);
    for (const [key, value] of Object.entries(changes)) {
      if (value === null || value === undefined || value === "" || value === 0) q.delete(key);
      else q.set(key, String(value));
    }
    const path = window.location.hash.replace(/^#/, "").split("?")[0] || "/";
    const text = q.toString();
    return `#${path}${text ? `?${text}` : ""}`;
  }

  offset(name = "offset") {
    const n = Number.parseInt(this.query.get(name) || "0", 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  }
}

/** Keeps a page's view current: load() now, again after events (debounced), after reconnects. */
function reloader(page, load, ms = 400) {
  let running = null;
  let again = false;
  let first = true;
  const run = async () => {
    if (page.closed) return;
    if (first) {
      // the first read waits until the page's events are followed (pages subscribe, then
      // read), so nothing that changes in between is missed
      first = false;
      await page.subscribed();
      if (page.closed) return;
    }
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      try {
        await load();
        page.showError(null);
      } catch (err) {
        if (!page.closed) page.showError(err);
      }
    })();
    await running;
    running = null;
    if (again) {
      again = false;
      await run();
    }
  };
  const soon = debounce(run, ms);
  page.onReconnect(soon);
  return { now: run, soon };
}

// -- builders --------------------------------------------------------------------------------

const BUILDERS_PAGE = 50;

async function buildersPage(page) {
  const offset = page.offset();
  const filter = page.query.get("name") || "";
  const body = h("div");
  const search = h("input", {
    type: "search",
    placeholder: "filter by name",
    value: filter,
    "aria-label": "filter builders by name",
  });
  const form = h(
    "form",
    {
      class: "filter",
      onsubmit: (ev) => {
        ev.preventDefault();
        window.location.hash = page.href({ name: search.value.trim(), offset: null });
      },
    },
    search,
    h("button", { type: "submit" }, "Filter"),
  );
  replace(page.root, h("h1", {}, "Builders"), form, body);
  let shown = new Set();

  const load = async () => {
    const params = { order: "name", limit: BUILDERS_PAGE, offset };
    if (filter) params.name__contains = filter;
    const { items, total } = await list("builders", "builders", params);
    const byBuilder = await lastBuilds(
      items.map((b) => b.builderid),
      1,
    );
    const lasts = items.map((b) => byBuilder.get(b.builderid)[0] || null);
    if (page.closed) return;
    shown = new Set(items.map((b) => b.builderid));
    const rows = items.map((b, i) => {
      const last = lasts[i];
      return h(
        "tr",
        { dataset: { builderid: String(b.builderid) } },
        h("td", {}, h("a", { href: `#/builders/${b.builderid}` }, b.name)),
        h(
          "td",
          { class: "last-build" },
          last
            ? h(
                "a",
                { href: `#/builders/${b.builderid}/builds/${last.number}` },
                badge(last.results, last.complete, `#${last.number} ${resultText(last)}`),
              )
            : h("span", { class: "muted" }, "no builds"),
        ),
        h("td", {}, last ? ago(last.complete_at || last.started_at) : ""),
        h("td", {}, (b.tags || []).map((t) => h("span", { class: "tag" }, t))),
        h("td", { class: "muted" }, b.description || ""),
      );
    });
    replace(
      body,
      table(["Builder", "Last build", "When", "Tags", "Description"], rows, {
        class: "list builders",
      }),
      pager(total, offset, BUILDERS_PAGE, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load, 800);
  page.live("builds/*/*", (_key, build) => {
    if (build && shown.has(build.builderid)) view.soon();
  });
  await view.now();
}

/**
 * The last `count` builds of each builder, newest first: what `builders/<id>/builds?order=-number
 * &limit=<count>` gives for each, read with one request for them all, the most recent builds of
 * those builders (builderid__eq, by -buildid: a builder's build numbers grow with its build ids).
 * A builder with fewer than `count` there, when that answer is not all their builds, has its own
 * request. `fields`: only these (and builderid and number) are read.
 */
async function lastBuilds(builderids, count, fields) {
  const found = new Map(builderids.map((id) => [id, []]));
  if (!builderids.length) return found;
  const limit = Math.max(count * builderids.length, Math.min(4 * count * builderids.length, 500));
  const params = { builderid__eq: builderids, order: "-buildid", limit };
  if (fields) params.field = [...new Set([...fields, "builderid", "number"])];
  const { items, total } = await list("builds", "builds", params);
  for (const build of items) {
    const builds = found.get(build.builderid);
    if (builds && builds.length < count) builds.push(build);
  }
  if (total > items.length) {
    await Promise.all(
      builderids
        .filter((id) => found.get(id).length < count)
        .map(async (id) => {
          const own = { order: "-number", limit: count };
          if (fields) own.field = fields;
          found.set(id, (await list(`builders/${id}/builds`, "builds", own)).items);
        }),
    );
  }
  return found;
}

function resultText(build) {
  if (!build.complete) return "running";
  return badgeName(build.results);
}

function badgeName(results) {
  return ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED"][results] ?? "";
}

// -- grid ------------------------------------------------------------------------------------

const GRID_BUILDERS = 25;
const GRID_BUILDS = 15;

async function gridPage(page) {
  const offset = page.offset();
  const body = h("div");
  replace(page.root, h("h1", {}, "Grid"), h("p", { class: "muted" }, `The last ${GRID_BUILDS} builds of each builder, newest first.`), body);
  let shown = new Set();
  const load = async () => {
    const { items, total } = await list("builders", "builders", {
      order: "name",
      limit: GRID_BUILDERS,
      offset,
    });
    const byBuilder = await lastBuilds(
      items.map((b) => b.builderid),
      GRID_BUILDS,
      ["buildid", "number", "results", "complete", "state_string"],
    );
    const builds = items.map((b) => byBuilder.get(b.builderid));
    if (page.closed) return;
    shown = new Set(items.map((b) => b.builderid));
    const rows = items.map((b, i) =>
      h(
        "tr",
        {},
        h("th", {}, h("a", { href: `#/builders/${b.builderid}` }, b.name)),
        builds[i].map((build) =>
          h(
            "td",
            { class: "grid-cell" },
            h(
              "a",
              {
                href: `#/builders/${b.builderid}/builds/${build.number}`,
                title: `#${build.number} ${build.state_string}`,
              },
              badge(build.results, build.complete, String(build.number)),
            ),
          ),
        ),
      ),
    );
    replace(
      body,
      h("table", { class: "grid" }, h("tbody", {}, rows)),
      pager(total, offset, GRID_BUILDERS, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load, 1000);
  page.live("builds/*/*", (_key, build) => {
    if (build && shown.has(build.builderid)) view.soon();
  });
  await view.now();
}

// -- workers ---------------------------------------------------------------------------------

const WORKERS_PAGE = 50;

async function workersPage(page) {
  const offset = page.offset();
  const body = h("div");
  replace(page.root, h("h1", {}, "Workers"), body);
  let shown = new Set();
  const load = async () => {
    const { items, total } = await list("workers", "workers", {
      order: "name",
      limit: WORKERS_PAGE,
      offset,
    });
    const running = items.length
      ? await list("builds", "builds", {
          complete: "false",
          workerid: items.map((w) => w.workerid),
          field: ["buildid", "number", "builderid", "workerid", "complete"],
          limit: 500,
        })
      : { items: [] };
    const names = new Map();
    await loadBuilders(running.items.map((b) => b.builderid));
    await Promise.all(
      [...new Set(running.items.map((b) => b.builderid))].map(async (id) => {
        names.set(id, (await builder(id)).name);
      }),
    );
    if (page.closed) return;
    shown = new Set(items.map((w) => w.workerid));
    const rows = items.map((w) =>
      h(
        "tr",
        { dataset: { workerid: String(w.workerid) } },
        h("td", {}, h("a", { href: `#/workers/${w.workerid}` }, w.name)),
        h("td", {}, workerState(w)),
        h(
          "td",
          {},
          running.items
            .filter((b) => b.workerid === w.workerid)
            .map((b) =>
              h(
                "a",
                { class: "chip", href: `#/builders/${b.builderid}/builds/${b.number}` },
                `${names.get(b.builderid) || b.builderid} #${b.number}`,
              ),
            ),
        ),
        h("td", { class: "muted" }, (w.workerinfo && w.workerinfo.host) || ""),
        h("td", { class: "muted" }, (w.workerinfo && w.workerinfo.version) || ""),
      ),
    );
    replace(
      body,
      table(["Worker", "State", "Running builds", "Host", "Version"], rows, { class: "list" }),
      pager(total, offset, WORKERS_PAGE, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load, 800);
  page.live("workers/*/*", () => view.soon());
  page.live("builds/*/*", (_key, build) => {
    if (build && shown.has(build.workerid)) view.soon();
  });
  await view.now();
}

export function workerState(w) {
  const connected = (w.connected_to || []).length > 0;
  return h(
    "span",
    {},
    h("span", { class: connected ? "state on" : "state off" }, connected ? "connected" : "disconnected"),
    w.paused ? h("span", { class: "state paused" }, "paused") : null,
    w.graceful ? h("span", { class: "state paused" }, "stopping") : null,
  );
}

const WORKER_BUILDS = 25;

async function workerPage(page, workerid) {
  const offset = page.offset();
  const head = h("div");
  const message = h("div", { class: "action-message" });
  const builds = h("div");
  replace(page.root, head, message, h("h2", {}, "Builds"), builds);
  const loadWorker = async () => {
    const w = await one(`workers/${workerid}`, "workers");
    if (page.closed) return;
    const action = async (method) => {
      replace(message);
      try {
        await rpc(`workers/${workerid}`, method, { reason: "from the web UI" });
        await loadWorker();
      } catch (err) {
        replace(message, actionError(err));
      }
    };
    const info = Object.entries(w.workerinfo || {}).map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", {}, v === null ? "" : String(v))),
    );
    replace(
      head,
      h("h1", {}, "Worker ", w.name, " ", workerState(w)),
      h(
        "div",
        { class: "actions" },
        w.paused
          ? h("button", { onclick: () => action("unpause") }, "Unpause")
          : h("button", { onclick: () => action("pause") }, "Pause"),
      ),
      w.pause_reason ? h("p", {}, "Pause reason: ", w.pause_reason) : null,
      h("table", { class: "props" }, h("tbody", {}, info)),
    );
  };
  const loadBuilds = async () => {
    const { items, total } = await list(`workers/${workerid}/builds`, "builds", {
      order: "-buildid",
      limit: WORKER_BUILDS,
      offset,
    });
    const rows = await buildRows(items, { builderColumn: true });
    if (page.closed) return;
    replace(
      builds,
      rows,
      pager(total, offset, WORKER_BUILDS, (o) => page.href({ offset: o })),
    );
  };
  const viewWorker = reloader(page, loadWorker);
  const viewBuilds = reloader(page, loadBuilds, 800);
  page.live(`workers/${workerid}/*`, () => viewWorker.soon());
  page.live(`workers/${workerid}/builds/*/*`, () => viewBuilds.soon());
  await Promise.all([viewWorker.now(), viewBuilds.now()]);
}

// -- changes ---------------------------------------------------------------------------------

const CHANGES_PAGE = 30;

async function changesPage(page) {
  const offset = page.offset();
  const body = h("div");
  replace(page.root, h("h1", {}, "Changes"), body);
  const load = async () => {
    const { items, total } = await list("changes", "changes", {
      order: "-changeid",
      limit: CHANGES_PAGE,
      offset,
    });
    if (page.closed) return;
    replace(
      body,
      h("div", { class: "changes" }, items.map(changeView)),
      pager(total, offset, CHANGES_PAGE, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load, 800);
  if (offset === 0) page.live("changes/*/*", () => view.soon());
  await view.now();
}

export function changeView(c) {
  const link = safeUrl(c.revlink);
  const [summary, ...rest] = (c.comments || "").split("\n");
  return h(
    "details",
    { class: "change" },
    h(
      "summary",
      {},
      h("span", { class: "rev" }, link ? h("a", { href: link, rel: "noreferrer" }, (c.revision || "").slice(0, 12)) : (c.revision || "").slice(0, 12)),
      " ",
      h("strong", {}, summary),
      " ",
      h("span", { class: "muted" }, `${c.author} · ${c.branch || ""} · ${ago(c.when_timestamp)}`),
    ),
    h(
      "table",
      { class: "props" },
      h(
        "tbody",
        {},
        [
          ["change", String(c.changeid)],
          ["author", c.author],
          ["committer", c.committer || ""],
          ["revision", c.revision || ""],
          ["branch", c.branch || ""],
          ["repository", c.repository],
          ["project", c.project],
          ["codebase", c.codebase],
          ["category", c.category || ""],
          ["when", formatTime(c.when_timestamp)],
        ].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
      ),
    ),
    rest.length ? h("pre", { class: "comments" }, rest.join("\n").trim()) : null,
    h("ul", { class: "files" }, (c.files || []).map((f) => h("li", {}, f))),
  );
}

// -- pending build requests ------------------------------------------------------------------

const PENDING_PAGE = 50;

async function pendingPage(page) {
  const offset = page.offset();
  const body = h("div");
  const message = h("div", { class: "action-message" });
  replace(page.root, h("h1", {}, "Pending build requests"), message, body);
  const load = async () => {
    const { items, total } = await list("buildrequests", "buildrequests", {
      claimed: "false",
      complete: "false",
      order: "buildrequestid",
      limit: PENDING_PAGE,
      offset,
    });
    const rows = await requestRows(items, () => view.now(), message);
    if (page.closed) return;
    replace(
      body,
      rows,
      pager(total, offset, PENDING_PAGE, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load, 500);
  page.live("buildrequests/*/*", () => view.soon());
  await view.now();
}

/**
 * A table of build requests with their builders and a Cancel button each; a refused or failed
 * cancel is shown in `message` (an element the page keeps across reloads of the table).
 */
export async function requestRows(items, changed, message) {
  const names = new Map();
  await loadBuilders(items.map((r) => r.builderid));
  await Promise.all(
    [...new Set(items.map((r) => r.builderid))].map(async (id) => {
      try {
        names.set(id, (await builder(id)).name);
      } catch {
        names.set(id, String(id));
      }
    }),
  );
  const rows = items.map((r) =>
    h(
      "tr",
      { dataset: { buildrequestid: String(r.buildrequestid) } },
      h("td", {}, String(r.buildrequestid)),
      h("td", {}, h("a", { href: `#/builders/${r.builderid}` }, names.get(r.builderid))),
      h("td", {}, String(r.priority)),
      h("td", {}, ago(r.submitted_at)),
      h(
        "td",
        {},
        h(
          "button",
          {
            class: "danger",
            onclick: async (ev) => {
              ev.target.disabled = true;
              replace(message);
              try {
                await rpc(`buildrequests/${r.buildrequestid}`, "cancel", {
                  reason: "cancelled from the web UI",
                });
              } catch (err) {
                replace(message, actionError(err));
              }
              changed();
            },
          },
          "Cancel",
        ),
      ),
    ),
  );
  return table(["Request", "Builder", "Priority", "Submitted", ""], rows, {
    class: "list requests",
  });
}

// -- masters ---------------------------------------------------------------------------------

async function mastersPage(page) {
  const offset = page.offset();
  const body = h("div");
  replace(page.root, h("h1", {}, "Masters"), body);
  const load = async () => {
    const { items, total } = await list("masters", "masters", {
      order: "name",
      limit: 50,
      offset,
    });
    if (page.closed) return;
    const rows = items.map((m) =>
      h(
        "tr",
        {},
        h("td", {}, String(m.masterid)),
        h("td", {}, m.name),
        h("td", {}, h("span", { class: m.active ? "state on" : "state off" }, m.active ? "active" : "inactive")),
        h("td", {}, formatTime(m.last_active)),
      ),
    );
    replace(
      body,
      table(["Id", "Name", "State", "Last active"], rows, { class: "list" }),
      pager(total, offset, 50, (o) => page.href({ offset: o })),
    );
  };
  const view = reloader(page, load);
  page.live("masters/*/*", () => view.soon());
  await view.now();
}

// -- a build by its id -----------------------------------------------------------------------

async function buildByIdPage(page, buildid) {
  const build = await one(`builds/${buildid}`, "builds", { field: ["builderid", "number"] });
  if (!page.closed) window.location.replace(`#/builders/${build.builderid}/builds/${build.number}`);
}

// -- router ----------------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, (page) => buildersPage(page)],
  [/^\/builders$/, (page) => buildersPage(page)],
  [/^\/builders\/(\d+)$/, (page, m) => builderPage(page, Number(m[1]))],
  [/^\/builders\/(\d+)\/builds\/(\d+)$/, (page, m) => buildPage(page, Number(m[1]), Number(m[2]))],
  [/^\/builds\/(\d+)$/, (page, m) => buildByIdPage(page, Number(m[1]))],
  [/^\/grid$/, (page) => gridPage(page)],
  [/^\/workers$/, (page) => workersPage(page)],
  [/^\/workers\/(\d+)$/, (page, m) => workerPage(page, Number(m[1]))],
  [/^\/changes$/, (page) => changesPage(page)],
  [/^\/pending$/, (page) => pendingPage(page)],
  [/^\/masters$/, (page) => mastersPage(page)],
];

let current = null;

async function route() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  if (current) current.close();
  const root = h("main", { id: "page" });
  document.getElementById("page").replaceWith(root);
  const page = new Page(root, new URLSearchParams(search || ""));
  current = page;
  const section = path.split("/")[1] || "builders";
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.dataset.section === section);
  }
  for (const [pattern, render] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    try {
      await render(page, m);
    } catch (err) {
      if (!page.closed) append(root, [errorBox(err)]);
    }
    return;
  }
  replace(root, h("h1", {}, "Not found"), h("p", {}, `Nothing at ${path}.`));
}

function start() {
  const user = document.getElementById("user");
  loadSession().then(() => {
    if (!autoLogin()) renderUser(user);
  });
  window.addEventListener("hashchange", () => renderUser(user));
  const status = document.getElementById("ws-status");
  events.statusHandlers.add((connected) => {
    status.className = connected ? "ws on" : "ws off";
    status.title = connected ? "live updates on" : "live updates reconnecting";
  });
  events.connect();
  window.addEventListener("hashchange", route);
  setInterval(tick, 1000);
  route();
}

start();
