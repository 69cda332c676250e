// A build's page: its steps with results and durations, their logs with a live tail, the
// build's properties and changes, and Stop / Rebuild.

import { newAnsiState, renderAnsi } from "./ansi.js";
import { get, list, one, rpc, worker } from "./api.js";
import { changeView } from "./app.js";
import { followRequest } from "./builder.js";
import { actionError } from "./session.js";
import {
  append,
  badge,
  debounce,
  duration,
  errorBox,
  formatTime,
  h,
  replace,
  resultName,
  safeUrl,
  table,
} from "./dom.js";

// the lines a log shows at first (its end); earlier ones come with "show earlier lines"
const TAIL_LINES = 1000;
const MORE_LINES = 2000;
// lines read per request while following, and the most kept in the page (older ones drop off)
const FETCH_LINES = 2000;
const MAX_DOM_LINES = 10000;

/** One log's lines, fetched by line number; follow() keeps the view at the end as it grows. */
class LogView {
  constructor(page, log) {
    this.page = page;
    this.log = log;
    this.first = Math.max(0, log.num_lines - TAIL_LINES); // first line shown
    this.next = this.first; // next line to fetch
    this.busy = false;
    this.again = false;
    this.ansi = newAnsiState();
    this.count = h("span", { class: "muted log-count" }, `${log.num_lines} lines`);
    this.lines = h("div", { class: "log-lines", dataset: { logid: String(log.logid) } });
    this.earlier = h("div", { class: "log-earlier" });
    this.scroller = h("div", { class: "log-scroll" }, this.earlier, this.lines);
    this.element = h("div", { class: `log log-type-${log.type}` }, this.scroller);
    this.renderEarlier();
    if (log.type === "h") this.loadHtml();
    else this.fetch();
  }

  renderEarlier() {
    if (this.first <= 0) {
      replace(this.earlier);
      return;
    }
    replace(
      this.earlier,
      h(
        "button",
        {
          class: "link",
          onclick: () => this.loadEarlier(),
        },
        `show ${Math.min(this.first, MORE_LINES)} earlier lines (of ${this.first})`,
      ),
    );
  }

  async loadEarlier() {
    const start = Math.max(0, this.first - MORE_LINES);
    const text = await this.contents(start, this.first - start);
    const fragment = document.createDocumentFragment();
    this.renderLines(fragment, text, newAnsiState());
    this.lines.insertBefore(fragment, this.lines.firstChild);
    this.first = start;
    this.renderEarlier();
  }

  async loadHtml() {
    // HTML logs are shown in a sandboxed frame (no scripts, no access to this page)
    const body = await get(`logs/${this.log.logid}/contents`);
    const chunk = (body.logchunks || [])[0];
    const frame = h("iframe", { sandbox: "", class: "log-html", title: this.log.name });
    frame.srcdoc = chunk ? chunk.content : "";
    replace(this.scroller, frame);
  }

  async contents(offset, limit) {
    if (limit <= 0) return "";
    const body = await get(`logs/${this.log.logid}/contents`, { offset, limit });
    return (body.logchunks || []).map((c) => c.content).join("");
  }

  renderLines(parent, text, ansi) {
    const stdio = this.log.type === "s";
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    for (const line of lines) {
      let stream = "o";
      let content = line;
      if (stdio && line.length) {
        stream = line[0];
        content = line.slice(1);
      }
      const div = h("div", { class: `line stream-${stream}` });
      renderAnsi(div, content, ansi);
      if (!div.firstChild) div.appendChild(document.createTextNode("\u200b"));
      parent.appendChild(div);
    }
  }

  trim() {
    let dropped = 0;
    while (this.lines.childElementCount > MAX_DOM_LINES) {
      this.lines.firstChild.remove();
      dropped += 1;
    }
    if (dropped) {
      this.first += dropped;
      this.renderEarlier();
    }
  }

  /** The log entity changed (an append event): fetch the new lines, one fetch at a time. */
  update(log) {
    this.log = log;
    this.count.textContent = `${log.num_lines} lines`;
    this.fetch();
  }

  async fetch() {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      while (!this.page.closed && this.next < this.log.num_lines) {
        const count = Math.min(this.log.num_lines - this.next, FETCH_LINES);
        const atEnd =
          this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 30;
        const text = await this.contents(this.next, count);
        this.renderLines(this.lines, text, this.ansi);
        this.next += count;
        this.trim();
        if (atEnd) this.scroller.scrollTop = this.scroller.scrollHeight;
      }
    } catch (err) {
      append(this.element, [errorBox(err)]);
    } finally {
      this.busy = false;
    }
    if (this.again) {
      this.again = false;
      await this.fetch();
    }
  }
}

/** A step's row: name, result, state, duration, its logs (opened on click), URLs. */
class StepView {
  constructor(page, step) {
    this.page = page;
    this.step = step;
    this.logs = new Map(); // logid -> log entity
    this.views = new Map(); // logid -> LogView (open logs)
    this.open = false;
    this.unsubscribe = null;
    this.header = h("div", { class: "step-head", onclick: () => this.toggle() });
    this.body = h("div", { class: "step-body" });
    this.element = h("div", { class: "step", dataset: { stepid: String(step.stepid) } }, this.header, this.body);
    this.render();
  }

  render() {
    const s = this.step;
    this.element.className = `step ${s.complete ? "" : "running"}`;
    this.element.dataset.results = s.results === null ? "" : String(s.results);
    replace(
      this.header,
      h("span", { class: "toggle" }, this.open ? "▾" : "▸"),
      badge(s.results, s.complete || !s.started_at, s.started_at ? null : "PENDING"),
      h("span", { class: "step-number" }, String(s.number + 1)),
      h("span", { class: "step-name" }, s.name),
      h("span", { class: "step-state" }, s.state_string),
      h("span", { class: "step-urls" }, (s.urls || []).map((u) => {
        const href = safeUrl(u.url);
        return href ? h("a", { href, rel: "noreferrer", target: "_blank", onclick: (ev) => ev.stopPropagation() }, u.name) : null;
      })),
      duration(s.started_at, s.complete_at),
    );
  }

  update(step) {
    const wasComplete = this.step.complete;
    this.step = step;
    this.render();
    if (!wasComplete && step.complete && step.results === 0 && this.autoOpened) this.setOpen(false);
  }

  toggle() {
    this.userToggled = true;
    this.setOpen(!this.open);
  }

  async setOpen(open) {
    if (open === this.open) return;
    this.open = open;
    this.render();
    if (!open) {
      if (this.unsubscribe) this.unsubscribe();
      this.unsubscribe = null;
      this.views.clear();
      replace(this.body);
      return;
    }
    // the step's logs, live: new logs and appends come as steps/<id>/logs/<slug>/<event>
    const stop = this.page.live(`steps/${this.step.stepid}/logs/*/*`, (_key, log) => {
      if (!this.open || !log) return;
      this.logs.set(log.logid, log);
      const view = this.views.get(log.logid);
      if (view) view.update(log);
      else this.renderLogs();
    });
    this.unsubscribe = stop;
    await this.loadLogs();
  }

  /** Read the step's logs again (after a reconnection: appends may have been missed). */
  async loadLogs() {
    const { items } = await list(`steps/${this.step.stepid}/logs`, "logs", { limit: 200 });
    if (!this.open || this.page.closed) return;
    const added = items.some((log) => !this.logs.has(log.logid));
    for (const log of items) {
      this.logs.set(log.logid, log);
      const view = this.views.get(log.logid);
      if (view) view.update(log);
    }
    if (added || !this.views.size) this.renderLogs();
  }

  renderLogs() {
    const logs = [...this.logs.values()].sort((a, b) => a.logid - b.logid);
    const existing = new Set(this.views.keys());
    const parts = logs.map((log) => {
      let view = this.views.get(log.logid);
      if (!view) {
        view = new LogView(this.page, log);
        this.views.set(log.logid, view);
      }
      existing.delete(log.logid);
      return h(
        "div",
        { class: "log-box" },
        h(
          "div",
          { class: "log-title" },
          h("strong", {}, log.name),
          " ",
          view.count,
          " ",
          h("a", { href: `api/v2/logs/${log.logid}/raw_inline`, target: "_blank" }, "raw"),
          " ",
          h("a", { href: `api/v2/logs/${log.logid}/raw` }, "download"),
        ),
        view.element,
      );
    });
    replace(this.body, parts.length ? parts : h("p", { class: "muted" }, "no logs"));
  }
}

export async function buildPage(page, builderid, number) {
  const [b, build] = await Promise.all([
    one(`builders/${builderid}`, "builders"),
    one(`builders/${builderid}/builds/${number}`, "builds"),
  ]);
  if (page.closed) return;
  const buildid = build.buildid;
  const head = h("div", { class: "build-head" });
  const summary = h("div");
  const stepsBox = h("div", { class: "steps" });
  const props = h("div");
  const changes = h("div");
  const nav = h("div", { class: "build-nav" });
  replace(
    page.root,
    head,
    summary,
    nav,
    h("h2", {}, "Steps"),
    stepsBox,
    h("h2", {}, "Properties"),
    props,
    h("h2", {}, "Changes"),
    changes,
  );

  let current = build;
  const actionMessage = h("div", { class: "action-message" });
  const renderHead = async () => {
    let workerName = "";
    if (current.workerid) {
      try {
        workerName = (await worker(current.workerid)).name;
      } catch {
        workerName = String(current.workerid);
      }
    }
    if (page.closed) return;
    const stop = h(
      "button",
      {
        class: "danger",
        onclick: async () => {
          stop.disabled = true;
          try {
            await rpc(`builds/${buildid}`, "stop", { reason: "stopped from the web UI" });
            replace(actionMessage, "Stopping…");
          } catch (err) {
            replace(actionMessage, actionError(err));
            stop.disabled = false;
          }
        },
      },
      "Stop",
    );
    const rebuild = h(
      "button",
      {
        onclick: async () => {
          rebuild.disabled = true;
          try {
            const result = await rpc(`builds/${buildid}`, "rebuild", {});
            const brid = Object.values(result[1] || {})[0];
            replace(actionMessage, `Build request ${brid} submitted; waiting for its build…`);
            await followRequest(page, brid, actionMessage);
          } catch (err) {
            replace(actionMessage, actionError(err));
          } finally {
            rebuild.disabled = false;
          }
        },
      },
      "Rebuild",
    );
    replace(
      head,
      h(
        "h1",
        {},
        h("a", { href: `#/builders/${builderid}` }, b.name),
        ` #${current.number} `,
        h("span", { id: "build-result" }, badge(current.results, current.complete)),
      ),
      h("div", { class: "actions" }, current.complete ? rebuild : stop),
      actionMessage,
    );
    replace(
      summary,
      table(
        ["State", "Started", "Finished", "Duration", "Worker", "Request"],
        [
          h(
            "tr",
            {},
            h("td", { class: "build-state" }, current.state_string),
            h("td", {}, formatTime(current.started_at)),
            h("td", {}, current.complete ? formatTime(current.complete_at) : "running"),
            h("td", {}, duration(current.started_at, current.complete_at)),
            h("td", {}, current.workerid ? h("a", { href: `#/workers/${current.workerid}` }, workerName) : ""),
            h("td", {}, String(current.buildrequestid)),
          ),
        ],
        { class: "list summary" },
      ),
    );
  };

  const loadNav = async () => {
    const { items } = await list("builds", "builds", {
      builderid,
      number__eq: [number - 1, number + 1],
      field: ["builderid", "number", "results", "complete"],
    });
    if (page.closed) return;
    const prev = items.find((x) => x.number === number - 1);
    const next = items.find((x) => x.number === number + 1);
    replace(
      nav,
      prev ? h("a", { href: `#/builders/${builderid}/builds/${prev.number}` }, `‹ #${prev.number}`) : null,
      " ",
      next ? h("a", { href: `#/builders/${builderid}/builds/${next.number}` }, `#${next.number} ›`) : null,
    );
  };

  // steps, kept by id so open logs survive updates
  const stepViews = new Map();
  let openedFailure = false;
  const placeStep = (step) => {
    let view = stepViews.get(step.stepid);
    if (view) {
      view.update(step);
    } else {
      view = new StepView(page, step);
      stepViews.set(step.stepid, view);
      const after = [...stepViews.values()]
        .filter((v) => v.step.number > step.number)
        .sort((x, y) => x.step.number - y.step.number)[0];
      stepsBox.insertBefore(view.element, after ? after.element : null);
    }
    // follow the running step; open the first failing one of a finished build
    if (step.started_at && !step.complete && !view.open && !view.userToggled) {
      view.autoOpened = true;
      view.setOpen(true);
    } else if (!openedFailure && step.complete && (step.results === 2 || step.results === 4) && !view.open) {
      openedFailure = true;
      view.setOpen(true);
    }
  };
  const loadSteps = async () => {
    const { items } = await list(`builds/${buildid}/steps`, "steps", { order: "number", limit: 1000 });
    if (page.closed) return;
    for (const step of items) placeStep(step);
    if (!items.length) replace(stepsBox, h("p", { class: "muted" }, "no steps yet"));
  };
  const loadProps = async () => {
    const body = await get(`builds/${buildid}/properties`);
    const map = (body.properties || [])[0] || {};
    if (page.closed) return;
    const rows = Object.keys(map)
      .sort()
      .map((name) => {
        const [value, source] = map[name];
        return h(
          "tr",
          {},
          h("th", {}, name),
          h("td", { class: "prop-value" }, typeof value === "string" ? value : JSON.stringify(value)),
          h("td", { class: "muted" }, source),
        );
      });
    replace(props, table(["Name", "Value", "Source"], rows, { class: "list props" }));
  };
  const loadChanges = async () => {
    const { items, total } = await list(`builds/${buildid}/changes`, "changes", { limit: 50 });
    if (page.closed) return;
    replace(
      changes,
      items.length ? h("div", { class: "changes" }, items.map(changeView)) : h("p", { class: "muted" }, "none"),
      total > items.length ? h("p", {}, `… and ${total - items.length} more`) : null,
    );
  };
  const reloadBuild = async () => {
    current = await one(`builds/${buildid}`, "builds");
    await renderHead();
  };

  const refreshProps = debounce(() => loadProps().catch(console.error), 500);
  page.live(`builds/${buildid}/*`, (key, message) => {
    if (message && message.buildid === buildid) {
      current = message;
      renderHead();
      if (key.endsWith("/finished")) {
        replace(actionMessage);
        refreshProps();
        loadNav().catch(console.error);
      }
    }
  });
  page.live(`builds/${buildid}/properties/*`, refreshProps);
  page.live(`builds/${buildid}/steps/*/*`, (_key, step) => {
    if (step && step.stepid) placeStep(step);
  });
  page.live(`builders/${builderid}/builds/*/new`, () => loadNav().catch(console.error));
  page.onReconnect(() => {
    reloadBuild().catch(console.error);
    loadSteps().catch(console.error);
    refreshProps();
    for (const view of stepViews.values()) if (view.open) view.loadLogs().catch(console.error);
  });
  // the build as it is once its events are followed: what changed before is in what is read
  await page.subscribed();
  if (page.closed) return;
  await reloadBuild();
  await Promise.all([loadSteps(), loadProps(), loadChanges(), loadNav()]);
  document.title = `${b.name} #${number} - ${resultName(current.results, current.complete)}`;
}
