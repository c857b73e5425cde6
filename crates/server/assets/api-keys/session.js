// Signing in and out. A token arrives from the organisation's identity
// provider (organisation-sign-in.js), pasted, or in a link's fragment (which
// is never sent to a server); the session ends when its token expires. Only
// the first load signs in from a fragment: a link followed later that would
// sign the tab in as someone else, or in another tenant, is asked about
// first, so a link cannot quietly land an admin in an attacker's tenant.

import { AuthError, Q_VIEWER, Q_WHO, gql } from "./graphql.js";
import { beginSignIn, finishSignIn, isSignInReturn, organisationSignIn } from "./organisation-sign-in.js";
import { TOKEN_KEY, state } from "./state.js";
import { renderPolicy } from "./key-policy.js";
import { clearTable, fillOwnerSelects, loadKeys } from "./table.js";
import { clearWebhooks, loadWebhooks } from "./webhooks.js";
import { $, closeAllDialogs, closeDialog, hideBanner, openDialog, showBanner } from "./ui.js";

/** Refused credentials sign out; anything else is shown in the banner. */
export function handleError(error) {
  if (error instanceof AuthError) signOut(`Signed out: ${error.message}`);
  else showBanner(error.message);
}

/** The organisation sign-in the server offers, or null. */
let organisation = null;
let expiryTimer = null;

/** When a JWT expires, in ms since the epoch; null if it does not say. */
function expiresAt(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Keeps `token` as the session's, ending the session when it expires. */
function keep(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  clearTimeout(expiryTimer);
  const at = expiresAt(token);
  const delay = at === null ? null : Math.max(0, at - Date.now());
  // Timers cannot wait longer than 2^31 - 1 ms (~24.8 days); no token here lives that long.
  if (delay !== null && delay < 2 ** 31) {
    expiryTimer = setTimeout(() => signOut("Your session has expired; sign in again."), delay);
  }
}

function signOut(message) {
  clearTimeout(expiryTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.viewer = null;
  clearTable();
  clearWebhooks();
  $("keys").hidden = true;
  $("webhooks").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-message").textContent =
    message || (organisation ? "Sign in to manage API keys." : "Paste an admin token to manage API keys.");
  closeAllDialogs();
  $("secret-value").textContent = "";
}

function describe(viewer) {
  return `${viewer.user ? viewer.user.name : "an API key"} in ${viewer.tenant.name}`;
}

async function start(token) {
  keep(token);
  hideBanner();
  clearTable();
  try {
    const data = await gql(Q_VIEWER);
    state.viewer = data.viewer;
    state.candidates = data.apiKeyOwnerCandidates;
    state.permissions = data.apiKeyPermissions;
    state.policy = data.tenantKeyPolicy;
    renderPolicy();
    $("who").textContent = `${data.viewer.user ? data.viewer.user.name : "API key"} · ${data.viewer.tenant.name}`;
    // A link may filter the table to one owner (`?owner=`), e.g. a deactivated one's suspended keys.
    state.owner = new URLSearchParams(location.search).get("owner") || "";
    fillOwnerSelects();
    $("signin").hidden = true;
    $(state.page).hidden = false;
    $("sign-out").hidden = false;
    await (state.page === "webhooks" ? loadWebhooks() : loadKeys());
  } catch (error) {
    if (error instanceof AuthError) signOut(`Sign-in refused: ${error.message}`);
    else showBanner(error.message);
  }
}

/** The fragment's token, removed from the address bar at once. */
function tokenFromFragment() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.search);
  return token;
}

let offeredToken = null;

/** A link's token after the first load: a fresh token of the same person in
 * the same tenant is taken; anyone else is asked about. */
async function offerSwitch(token) {
  hideBanner();
  let who;
  try {
    who = (await gql(Q_WHO, {}, token)).viewer;
  } catch (error) {
    showBanner(`The link's sign-in was refused: ${error.message}`);
    return;
  }
  const current = state.viewer;
  const samePerson = current && current.user && who.user && who.user.id === current.user.id && who.tenant.id === current.tenant.id;
  if (samePerson) {
    keep(token);
    return;
  }
  offeredToken = token;
  $("switch-text").textContent = `This link signs you in as ${describe(who)}.`;
  $("switch-current").textContent = current ? `You are signed in as ${describe(current)}.` : "You are not signed in.";
  openDialog($("switch-dialog"));
  $("switch-stay").focus();
}

export function initSession() {
  $("sign-out").addEventListener("click", () => signOut("You signed out."));
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) start(token);
  });
  $("switch-ok").addEventListener("click", () => {
    const token = offeredToken;
    closeDialog($("switch-dialog"));
    if (token) start(token);
  });
  $("switch-dialog").addEventListener("close", () => (offeredToken = null));
  window.addEventListener("hashchange", () => {
    const token = tokenFromFragment();
    if (token) offerSwitch(token);
  });
  $("org-signin-button").addEventListener("click", () => beginSignIn(organisation).catch((e) => showBanner(e.message)));
  resume();
}

/** The first load: back from the identity provider, a link's token, the tab's session, or signed out. */
async function resume() {
  const returning = isSignInReturn();
  try {
    organisation = await organisationSignIn();
  } catch (error) {
    showBanner(error.message);
  }
  $("org-signin").hidden = !organisation;
  if (returning && organisation) {
    try {
      start(await finishSignIn(organisation));
    } catch (error) {
      signOut(error.message);
    }
    return;
  }
  const saved = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else signOut();
}
