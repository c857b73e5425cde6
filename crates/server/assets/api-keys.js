// The API keys page (Settings › Integrations › API): a reference admin console
// page over Latchkey's GraphQL API. Every user-supplied string is rendered with
// textContent; the admin token lives in sessionStorage only.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "latchkey.adminToken";
const PAGE_SIZE = 25;
const LEGACY_HINT = "This key was created before key management existed, so it has no edit history.";

const KEY_FIELDS = `id lastFour description createdAt lastEditedAt lastUsedAt
  owner { id name role } createdBy { id name } lastEditedBy { id name }`;
const Q_VIEWER = `{ viewer { tenant { name } user { id name role } clouds } apiKeyOwnerCandidates { id name role } }`;
const Q_KEYS = `query($first: Int, $after: String, $search: String, $ownerId: ID) {
  apiKeys(first: $first, after: $after, search: $search, ownerId: $ownerId) {
    totalCount pageInfo { hasNextPage endCursor } nodes { ${KEY_FIELDS} } } }`;
const M_GENERATE = `mutation($input: GenerateApiKeyInput!) { generateApiKey(input: $input) {
  secret apiKey { ${KEY_FIELDS} } userErrors { field message code } } }`;
const M_ROTATE = `mutation($input: RotateApiKeyInput!) { rotateApiKey(input: $input) {
  secret apiKey { ${KEY_FIELDS} } userErrors { field message code } } }`;
const M_EDIT = `mutation($input: UpdateApiKeyDescriptionInput!) { updateApiKeyDescription(input: $input) {
  apiKey { ${KEY_FIELDS} } userErrors { field message code } } }`;
const M_DELETE = `mutation($input: DeleteApiKeyInput!) { deleteApiKey(input: $input) {
  deletedApiKeyId userErrors { field message code } } }`;

const ROLE_NAMES = { INTERNAL_ADMIN: "Internal admin", ACADEMY_ADMIN: "Academy admin", INTEGRATION_USER: "Integration user" };

const state = { token: null, viewer: null, candidates: [], keys: [], after: null, hasMore: false, total: 0, search: "", owner: "", loadSeq: 0, rendered: false };

class AuthError extends Error {}

async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new Error("Cannot reach the server. Check your connection and try again.");
  }
  if (!response.ok) throw new Error(`The server answered ${response.status}. Please try again.`);
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = body.errors[0];
    const code = error.extensions && error.extensions.code;
    if (code === "UNAUTHENTICATED") throw new AuthError(error.message);
    if (code === "FORBIDDEN") throw new AuthError(error.message);
    throw new Error(error.message || "Something went wrong.");
  }
  return body.data;
}

// ---------- banner ----------
function showBanner(message) {
  $("banner-text").textContent = message;
  $("banner").hidden = false;
}
function hideBanner() {
  $("banner").hidden = true;
  $("banner-text").textContent = "";
}

function handleError(error) {
  if (error instanceof AuthError) signOut(`Signed out: ${error.message}`);
  else showBanner(error.message);
}

/** Runs `action` with `buttons` disabled, so nothing is submitted twice. */
async function busy(buttons, action) {
  buttons.forEach((b) => (b.disabled = true));
  try {
    return await action();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// ---------- formatting ----------
function formatDate(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
function cell(text, label, className) {
  const td = document.createElement("td");
  if (label) td.dataset.label = label;
  if (className) td.className = className;
  td.textContent = text;
  return td;
}
function dateCell(iso, label, by, emptyText, emptyTitle) {
  const td = cell("", label);
  if (!iso) {
    td.textContent = emptyText;
    if (emptyTitle) td.title = emptyTitle;
    return td;
  }
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = iso;
  time.textContent = formatDate(iso);
  td.append(time);
  if (by) {
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = `by ${by.name}`;
    td.append(sub);
  }
  return td;
}

// ---------- table ----------
function renderRows() {
  const rows = $("rows");
  rows.replaceChildren(
    ...state.keys.map((key) => {
      const tr = document.createElement("tr");
      tr.dataset.keyId = key.id;
      tr.append(cell(`••••${key.lastFour}`, "Key", "key"));
      tr.append(cell(key.description, "Description", "desc"));
      const owner = cell(key.owner.name, "Owner");
      const role = document.createElement("span");
      role.className = "sub";
      role.textContent = ROLE_NAMES[key.owner.role] || key.owner.role;
      owner.append(role);
      tr.append(owner);
      tr.append(dateCell(key.lastEditedAt, "Last edited", key.lastEditedBy, "—", LEGACY_HINT));
      tr.append(dateCell(key.lastUsedAt, "Last used", null, "Never"));
      tr.append(dateCell(key.createdAt, "Created", key.createdBy, ""));
      const actions = document.createElement("div");
      actions.className = "row-actions";
      for (const [label, handler] of [["Edit", openEdit], ["Rotate", confirmRotate], ["Delete", confirmDelete]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.dataset.action = label.toLowerCase();
        button.setAttribute("aria-label", `${label} key ${key.description} ending in ${key.lastFour}`);
        button.addEventListener("click", () => handler(key, button));
        actions.append(button);
      }
      const wrap = document.createElement("td");
      wrap.append(actions);
      tr.append(wrap);
      return tr;
    }),
  );
  const filtered = state.search || state.owner;
  $("empty").hidden = state.keys.length > 0 || filtered;
  $("more").hidden = !state.hasMore;
  $("count").textContent = state.keys.length === 0 && filtered
    ? "No keys match these filters."
    : `Showing ${state.keys.length} of ${state.total} key${state.total === 1 ? "" : "s"}.`;
  if (!state.rendered) {
    state.rendered = true;
    performance.mark("api-keys-table-rendered");
  }
}

async function loadKeys({ append = false } = {}) {
  const seq = ++state.loadSeq;
  const variables = { first: PAGE_SIZE, after: append ? state.after : null, search: state.search || null, ownerId: state.owner || null };
  const data = await gql(Q_KEYS, variables);
  if (seq !== state.loadSeq) return; // a newer search won
  const page = data.apiKeys;
  state.keys = append ? state.keys.concat(page.nodes) : page.nodes;
  state.after = page.pageInfo.endCursor;
  state.hasMore = page.pageInfo.hasNextPage;
  state.total = page.totalCount;
  renderRows();
}

// ---------- dialogs ----------
let returnFocus = null;
function openDialog(dialog, opener) {
  returnFocus = opener || document.activeElement;
  dialog.showModal();
}
function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}
for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("close", () => {
    if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
  });
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => closeDialog(dialog));
}

function clearFieldErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}
/** Shows each userError next to the field it names; returns whether there were any. */
function showUserErrors(userErrors, fieldIds) {
  for (const error of userErrors) {
    const name = error.field[error.field.length - 1];
    const id = fieldIds[name];
    if (id) {
      $(`${id}-error`).textContent = error.message;
      $(id).setAttribute("aria-invalid", "true");
    } else {
      showBanner(error.message);
    }
  }
  const first = userErrors.map((e) => fieldIds[e.field[e.field.length - 1]]).find(Boolean);
  if (first) $(first).focus();
  return userErrors.length > 0;
}

// ---------- the secret, shown once ----------
let copied = false;
function showSecret(secret, title) {
  copied = false;
  $("secret-title").textContent = title;
  $("secret-value").textContent = secret;
  $("copy-status").textContent = "";
  $("secret-confirm").hidden = true;
  $("secret-actions").hidden = false;
  openDialog($("secret-dialog"), $("generate"));
}
function dropSecret() {
  $("secret-value").textContent = "";
  $("copy-status").textContent = "";
  closeDialog($("secret-dialog"));
}
function askToDrop() {
  if (copied) return dropSecret();
  $("secret-actions").hidden = true;
  $("secret-confirm").hidden = false;
  $("secret-back").focus();
}
$("copy-secret").addEventListener("click", async () => {
  const secret = $("secret-value").textContent;
  try {
    await navigator.clipboard.writeText(secret);
    copied = true;
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("secret-value"));
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    copied = document.execCommand && document.execCommand("copy");
    selection.removeAllRanges();
  }
  $("copy-status").textContent = copied ? "Copied to the clipboard." : "Copying failed: select the key and copy it by hand.";
});
$("secret-done").addEventListener("click", askToDrop);
$("secret-back").addEventListener("click", () => {
  $("secret-confirm").hidden = true;
  $("secret-actions").hidden = false;
  $("copy-secret").focus();
});
$("secret-discard").addEventListener("click", dropSecret);
$("secret-dialog").addEventListener("cancel", (event) => {
  if (!copied) {
    event.preventDefault();
    askToDrop();
  } else {
    $("secret-value").textContent = "";
  }
});

// ---------- generate ----------
function fillOwnerSelects() {
  const me = state.viewer && state.viewer.user ? state.viewer.user.id : null;
  const options = () =>
    state.candidates.map((u) => {
      const o = document.createElement("option");
      o.value = u.id;
      o.textContent = `${u.name}${u.id === me ? " (you)" : ""} — ${ROLE_NAMES[u.role] || u.role}`;
      return o;
    });
  $("generate-owner").replaceChildren(...options());
  const all = document.createElement("option");
  all.value = "";
  all.textContent = "All owners";
  $("owner-filter").replaceChildren(all, ...options());
}
function openGenerate(event) {
  hideBanner();
  const form = $("generate-form");
  form.reset();
  clearFieldErrors(form);
  openDialog($("generate-dialog"), event && event.currentTarget);
  $("generate-description").focus();
}
$("generate").addEventListener("click", openGenerate);
$("generate-empty").addEventListener("click", openGenerate);
$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearFieldErrors(form);
  const input = { ownerId: $("generate-owner").value, description: $("generate-description").value };
  await busy([...form.querySelectorAll("button")], async () => {
    try {
      const result = (await gql(M_GENERATE, { input })).generateApiKey;
      if (showUserErrors(result.userErrors, { description: "generate-description", ownerId: "generate-owner" })) return;
      closeDialog($("generate-dialog"));
      showSecret(result.secret, "Copy your new API key");
      await loadKeys();
    } catch (error) {
      closeDialog($("generate-dialog"));
      handleError(error);
    }
  });
});

// ---------- edit ----------
let editing = null;
function openEdit(key, button) {
  hideBanner();
  editing = key;
  clearFieldErrors($("edit-form"));
  $("edit-description").value = key.description;
  openDialog($("edit-dialog"), button);
  $("edit-description").select();
}
$("edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearFieldErrors(form);
  await busy([...form.querySelectorAll("button")], async () => {
    try {
      const input = { id: editing.id, description: $("edit-description").value };
      const result = (await gql(M_EDIT, { input })).updateApiKeyDescription;
      if (showUserErrors(result.userErrors, { description: "edit-description" })) return;
      state.keys = state.keys.map((k) => (k.id === result.apiKey.id ? result.apiKey : k));
      renderRows();
      closeDialog($("edit-dialog"));
    } catch (error) {
      closeDialog($("edit-dialog"));
      handleError(error);
    }
  });
});

// ---------- rotate and delete (confirmed) ----------
let confirmAction = null;
function confirmWith(title, text, okLabel, action, opener) {
  hideBanner();
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  confirmAction = action;
  openDialog($("confirm-dialog"), opener);
  $("confirm-ok").focus();
}
$("confirm-ok").addEventListener("click", async () => {
  const buttons = [...$("confirm-dialog").querySelectorAll("button")];
  await busy(buttons, async () => {
    try {
      await confirmAction();
    } catch (error) {
      closeDialog($("confirm-dialog"));
      handleError(error);
    }
  });
});
function confirmRotate(key, button) {
  confirmWith(
    "Rotate API key?",
    `Rotating “${key.description}” (••••${key.lastFour}) creates a new secret. The current secret stops working immediately; integrations using it must be updated.`,
    "Rotate key",
    async () => {
      const result = (await gql(M_ROTATE, { input: { id: key.id } })).rotateApiKey;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      showSecret(result.secret, "Copy your rotated API key");
      await loadKeys();
    },
    button,
  );
}
function confirmDelete(key, button) {
  confirmWith(
    "Delete API key?",
    `Delete “${key.description}” (••••${key.lastFour})? Integrations using it will stop working immediately. This cannot be undone.`,
    "Delete key",
    async () => {
      const result = (await gql(M_DELETE, { input: { id: key.id } })).deleteApiKey;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      await loadKeys();
    },
    button,
  );
}

// ---------- filters and paging ----------
let searchTimer = null;
$("search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.search = event.target.value.trim();
    loadKeys().catch(handleError);
  }, 250);
});
$("owner-filter").addEventListener("change", (event) => {
  state.owner = event.target.value;
  loadKeys().catch(handleError);
});
$("more").addEventListener("click", async (event) => {
  await busy([event.currentTarget], () => loadKeys({ append: true }).catch(handleError));
});
$("banner-close").addEventListener("click", hideBanner);

// ---------- sign-in ----------
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.keys = [];
  state.search = "";
  state.owner = "";
  state.rendered = false;
  $("search").value = "";
  $("rows").replaceChildren();
  $("keys").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-message").textContent = message || "Paste an admin token to manage API keys.";
  for (const dialog of document.querySelectorAll("dialog")) closeDialog(dialog);
  $("secret-value").textContent = "";
}
$("sign-out").addEventListener("click", () => signOut("You signed out."));
$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  if (token) start(token);
});

async function start(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  hideBanner();
  try {
    const data = await gql(Q_VIEWER);
    state.viewer = data.viewer;
    state.candidates = data.apiKeyOwnerCandidates;
    $("who").textContent = `${data.viewer.user ? data.viewer.user.name : "API key"} · ${data.viewer.tenant.name}`;
    fillOwnerSelects();
    $("signin").hidden = true;
    $("keys").hidden = false;
    $("sign-out").hidden = false;
    await loadKeys();
  } catch (error) {
    if (error instanceof AuthError) signOut(`Sign-in refused: ${error.message}`);
    else showBanner(error.message);
  }
}

// The token may arrive in the URL fragment (never sent to a server); it is
// moved to sessionStorage and removed from the address bar at once.
function tokenFromFragment() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.search);
  return token;
}
window.addEventListener("hashchange", () => {
  const token = tokenFromFragment();
  if (token) start(token);
});
const saved = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else signOut();
