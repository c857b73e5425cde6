// The Webhooks section (Settings › Integrations › Webhooks): the tenant's
// endpoints, one line each with their actions in a menu; the add/edit dialog
// with the event-type picker; the signing secret shown once.

import { confirmWith } from "./confirm-dialog.js";
import { gql } from "./graphql.js";
import { rowMenu } from "./row-menu.js";
import { showSecret } from "./secret-dialog.js";
import { $, busy, textCell as cell, clearFieldErrors, closeDialog, formatDate, openDialog, showBanner, showUserErrors } from "./ui.js";
import { openDeliveries } from "./webhook-log.js";

const ENDPOINT = "id url description eventTypes enabled createdAt disabledReason";
const ERRORS = "userErrors { field message code }";
const Q_ENDPOINTS = `{ webhookEndpoints(first: 20) { totalCount nodes { ${ENDPOINT} } }
  webhookEventTypes { name description } }`;
const M_CREATE = `mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
  endpoint { ${ENDPOINT} } signingSecret ${ERRORS} } }`;
const M_UPDATE = `mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) {
  endpoint { ${ENDPOINT} } ${ERRORS} } }`;
const M_DELETE = `mutation($input: WebhookEndpointIdInput!) { deleteWebhookEndpoint(input: $input) { deletedEndpointId ${ERRORS} } }`;
const M_ROTATE = `mutation($input: WebhookEndpointIdInput!) { rotateWebhookSigningSecret(input: $input) {
  endpoint { id } signingSecret ${ERRORS} } }`;
const M_TEST = `mutation($input: SendTestWebhookInput!) { sendTestWebhook(input: $input) { delivery { id } ${ERRORS} } }`;

const SECRET_WORDING = {
  warning: "This is the only time the signing secret is shown. Your receiver verifies every event's signature with it.",
  confirm: "You have not copied the signing secret. Close anyway? It cannot be shown again; you would have to rotate it.",
};
const FIELDS = { url: "endpoint-url", description: "endpoint-description", eventTypes: "endpoint-types" };

let endpoints = [];
let eventTypes = [];
/** The endpoint being edited; null when adding. */
let editing = null;
let onError = () => {};

function describeTypes(types) {
  return types.length ? types.join(", ") : "Every event type";
}

function render() {
  const rows = $("endpoint-rows");
  rows.replaceChildren();
  for (const endpoint of endpoints) {
    const tr = document.createElement("tr");
    tr.dataset.endpointId = endpoint.id;
    const status = endpoint.enabled ? "Enabled" : endpoint.disabledReason ? "Disabled by Latchkey" : "Disabled";
    const menu = document.createElement("td");
    menu.className = "actions-cell";
    menu.append(rowMenu(actions(endpoint), endpoint.url));
    tr.append(
      cell(endpoint.url, "url", endpoint.url),
      cell(endpoint.description || "—", "desc", endpoint.description),
      cell(describeTypes(endpoint.eventTypes), "events", describeTypes(endpoint.eventTypes)),
      cell(status, endpoint.enabled ? "" : "status-failed", endpoint.disabledReason || ""),
      cell(formatDate(endpoint.createdAt), "", endpoint.createdAt),
      menu,
    );
    rows.append(tr);
  }
  $("endpoints-empty").hidden = endpoints.length > 0;
  const plural = endpoints.length === 1 ? "" : "s";
  $("endpoint-count").textContent = `${endpoints.length} endpoint${plural} (at most 20)`;
}

function actions(endpoint) {
  return [
    ["Deliveries", () => openDeliveries(endpoint), "deliveries"],
    ["Send test event", (button) => sendTest(endpoint, button), "test"],
    ["Edit", (button) => openEndpointDialog(endpoint, button), "edit"],
    [endpoint.enabled ? "Disable" : "Enable", (button) => toggle(endpoint, button), endpoint.enabled ? "disable" : "enable"],
    ["Rotate secret", (button) => rotate(endpoint, button), "rotate"],
    ["Delete", (button) => remove(endpoint, button), "delete"],
  ];
}

function replace(endpoint) {
  endpoints = endpoints.map((e) => (e.id === endpoint.id ? endpoint : e));
  render();
}

async function run(button, action) {
  try {
    await busy([button], action);
  } catch (error) {
    onError(error);
  }
}

function sendTest(endpoint, button) {
  return run(button, async () => {
    const data = await gql(M_TEST, { input: { endpointId: endpoint.id } });
    if (data.sendTestWebhook.userErrors.length) return showBanner(data.sendTestWebhook.userErrors[0].message);
    await openDeliveries(endpoint);
  });
}

function toggle(endpoint, button) {
  return run(button, async () => {
    const data = await gql(M_UPDATE, { input: { id: endpoint.id, enabled: !endpoint.enabled } });
    const payload = data.updateWebhookEndpoint;
    if (payload.userErrors.length) return showBanner(payload.userErrors[0].message);
    replace(payload.endpoint);
  });
}

function rotate(endpoint, button) {
  confirmWith(
    "Rotate the signing secret?",
    `Events to ${endpoint.url} are signed with the new secret and, for 24 hours, with the current one too. Update your receiver within that day.`,
    "Rotate secret",
    async () => {
      const payload = (await gql(M_ROTATE, { input: { id: endpoint.id } })).rotateWebhookSigningSecret;
      closeDialog($("confirm-dialog"));
      if (payload.userErrors.length) return showBanner(payload.userErrors[0].message);
      showSecret(payload.signingSecret, "Copy the new signing secret", SECRET_WORDING);
    },
    button,
  );
}

function remove(endpoint, button) {
  confirmWith(
    "Delete endpoint?",
    `Delete ${endpoint.url} and its delivery log? Events stop going there at once. This cannot be undone.`,
    "Delete endpoint",
    async () => {
      const payload = (await gql(M_DELETE, { input: { id: endpoint.id } })).deleteWebhookEndpoint;
      closeDialog($("confirm-dialog"));
      if (payload.userErrors.length) return showBanner(payload.userErrors[0].message);
      endpoints = endpoints.filter((e) => e.id !== endpoint.id);
      render();
      $("delivery-log").hidden = true;
    },
    button,
  );
}

function fillTypePicker(selected) {
  const list = $("endpoint-type-list");
  list.replaceChildren();
  for (const type of eventTypes) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = type.name;
    box.id = `endpoint-type-${type.name.replace(/\W/g, "-")}`;
    box.checked = selected.includes(type.name);
    const label = document.createElement("label");
    label.className = "inline";
    label.htmlFor = box.id;
    label.title = type.description;
    label.append(box, ` ${type.name}`);
    list.append(label);
  }
  $("endpoint-all-types").checked = selected.length === 0;
  list.hidden = selected.length === 0;
}

function openEndpointDialog(endpoint, opener) {
  editing = endpoint;
  const form = $("endpoint-form");
  clearFieldErrors(form);
  $("endpoint-title").textContent = endpoint ? "Edit endpoint" : "Add endpoint";
  $("endpoint-url").value = endpoint ? endpoint.url : "";
  $("endpoint-description").value = endpoint ? endpoint.description : "";
  fillTypePicker(endpoint ? endpoint.eventTypes : []);
  openDialog($("endpoint-dialog"), opener);
  $("endpoint-url").focus();
}

function chosenTypes() {
  if ($("endpoint-all-types").checked) return [];
  return [...$("endpoint-type-list").querySelectorAll("input:checked")].map((box) => box.value);
}

async function save(event) {
  event.preventDefault();
  const form = $("endpoint-form");
  clearFieldErrors(form);
  const input = { url: $("endpoint-url").value.trim(), description: $("endpoint-description").value, eventTypes: chosenTypes() };
  try {
    await busy([...form.querySelectorAll("button")], async () => {
      if (editing) {
        const payload = (await gql(M_UPDATE, { input: { id: editing.id, ...input } })).updateWebhookEndpoint;
        if (showUserErrors(payload.userErrors, FIELDS)) return;
        closeDialog($("endpoint-dialog"));
        replace(payload.endpoint);
      } else {
        const payload = (await gql(M_CREATE, { input })).createWebhookEndpoint;
        if (showUserErrors(payload.userErrors, FIELDS)) return;
        closeDialog($("endpoint-dialog"));
        endpoints = [...endpoints, payload.endpoint];
        render();
        showSecret(payload.signingSecret, "Copy your signing secret", SECRET_WORDING);
      }
    });
  } catch (error) {
    onError(error);
  }
}

/** Loads the endpoints and the event types (after sign-in, on the Webhooks page). */
export async function loadWebhooks() {
  const data = await gql(Q_ENDPOINTS);
  endpoints = data.webhookEndpoints.nodes;
  eventTypes = data.webhookEventTypes.filter((t) => t.name !== "webhook.test");
  render();
}

export function clearWebhooks() {
  endpoints = [];
  $("endpoint-rows").replaceChildren();
  $("delivery-rows").replaceChildren();
  $("delivery-log").hidden = true;
}

export function initWebhooks(handleError) {
  onError = handleError;
  $("add-endpoint").addEventListener("click", (event) => openEndpointDialog(null, event.currentTarget));
  $("endpoint-form").addEventListener("submit", save);
  $("endpoint-all-types").addEventListener("change", (event) => {
    $("endpoint-type-list").hidden = event.target.checked;
  });
}
