// Who is logged in, from the server's frontend config (GET config: Buildbot's, with its "user"
// and "auth" entries), shown in the top bar: the user's name and "Log out", or "Log in" when
// the master has a login and nobody is logged in ("Log in with GitHub" for an OAuth2 plugin).
// And how a refused action is shown.

import { errorBox, h, replace } from "./dom.js";

const state = { user: { anonymous: true }, auth: { name: "NoAuth" }, loaded: false };

/** Read the config once; a failure leaves the page working as anonymous. */
export async function loadSession() {
  try {
    const resp = await fetch("config", { headers: { Accept: "application/json" } });
    if (resp.ok) {
      const config = await resp.json();
      if (config && typeof config === "object") {
        if (config.user && typeof config.user === "object") state.user = config.user;
        if (config.auth && typeof config.auth === "object") state.auth = config.auth;
      }
    }
  } catch (err) {
    console.warn("could not read the config", err);
  }
  state.loaded = true;
  return state;
}

export function currentUser() {
  return state.user;
}

/** Whether "Log in" makes sense: an anonymous user on a master with an authentication plugin. */
export function canLogIn() {
  return Boolean(state.user.anonymous) && state.auth.name !== "NoAuth";
}

function here() {
  return `${window.location.pathname}${window.location.search}${window.location.hash}`;
}

export function loginHref() {
  if (state.auth.oauth2) {
    // the provider sends the browser back to buildbotURL#<route>, as to Buildbot's UI
    return `auth/login?redirect=${encodeURIComponent(window.location.hash.slice(1) || "/")}`;
  }
  return `auth/login?redirect=${encodeURIComponent(here())}`;
}

function loginLabel() {
  return state.auth.oauth2 ? `Log in with ${state.auth.name}` : "Log in";
}

/** An OAuth2 plugin with autologin: an anonymous visitor is sent to the provider at once. */
export function autoLogin() {
  if (state.user.anonymous && state.auth.oauth2 && state.auth.autologin) {
    window.location.assign(loginHref());
    return true;
  }
  return false;
}

export function logoutHref() {
  return `auth/logout?redirect=${encodeURIComponent(here())}`;
}

function userName(user) {
  return user.full_name || user.username || user.email || "";
}

/** The top bar's user box: called at start and on every navigation (the links name the page). */
export function renderUser(el) {
  const user = state.user;
  if (!user.anonymous) {
    replace(
      el,
      h("span", { class: "user-name", title: user.email || "" }, userName(user)),
      h("a", { class: "logout", href: logoutHref() }, "Log out"),
    );
  } else if (canLogIn()) {
    replace(el, h("a", { class: "login", href: loginHref() }, loginLabel()));
  } else {
    replace(el);
  }
}

/**
 * What a failed control action shows: the server's message; a refusal (403) says so plainly,
 * with a "Log in" link when nobody is logged in and the master takes passwords.
 */
export function actionError(err) {
  if (err && err.status === 403) {
    return h(
      "div",
      { class: "error refused", role: "alert" },
      h("strong", {}, "Not allowed: "),
      err.message,
      canLogIn() ? [" ", h("a", { href: loginHref() }, loginLabel())] : null,
    );
  }
  const box = errorBox(err);
  box.setAttribute("role", "alert");
  return box;
}
