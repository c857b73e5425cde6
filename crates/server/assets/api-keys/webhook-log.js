// An endpoint's delivery log: each event sent to it in the last 30 days, its
// status, attempts and the receiver's last answer; "Redeliver" sends one
// again (same webhook-id).

import { gql } from "./graphql.js";
import { rowMenu } from "./row-menu.js";
import { $, busy, textCell as cell, formatDate, showBanner } from "./ui.js";

const Q_DELIVERIES = `query($endpoint: ID!, $status: [WebhookDeliveryStatus!]) {
  webhookDeliveries(endpointId: $endpoint, status: $status, first: 50) { nodes { id messageId eventType status createdAt
    nextAttemptAt attempts { attemptedAt httpStatus durationMs responseBody error } } } }`;
const M_REDELIVER = `mutation($input: RedeliverWebhookInput!) { redeliverWebhook(input: $input) {
  delivery { id status } userErrors { field message code } } }`;
const STATUS_NAMES = { PENDING: "Pending", SUCCEEDED: "Succeeded", FAILED: "Failed" };

let shown = null;
let onError = () => {};

/** The last attempt in a few words: its status or error; the body is the title. */
function lastAnswer(delivery) {
  const last = delivery.attempts[delivery.attempts.length - 1];
  if (!last) return ["Not tried yet", ""];
  const answer = last.error || `HTTP ${last.httpStatus}`;
  const status = last.httpStatus ? `HTTP ${last.httpStatus}` : "";
  const text = last.error && status ? `${status}: ${last.error}` : answer;
  return [`${text} (${last.durationMs} ms)`, last.responseBody];
}

function render(deliveries) {
  const rows = $("delivery-rows");
  rows.replaceChildren();
  for (const delivery of deliveries) {
    const tr = document.createElement("tr");
    tr.dataset.deliveryId = delivery.id;
    const [answer, body] = lastAnswer(delivery);
    const due = delivery.nextAttemptAt ? `; next ${formatDate(delivery.nextAttemptAt)}` : "";
    const menu = document.createElement("td");
    menu.className = "actions-cell";
    menu.append(rowMenu([["Redeliver", (button) => redeliver(delivery, button), "redeliver"]], delivery.eventType));
    tr.append(
      cell(delivery.eventType, "", delivery.messageId),
      cell(STATUS_NAMES[delivery.status], `status-${delivery.status.toLowerCase()}`),
      cell(`${delivery.attempts.length}${due}`),
      cell(answer, "answer", body),
      cell(formatDate(delivery.createdAt), "", delivery.createdAt),
      menu,
    );
    rows.append(tr);
  }
  $("deliveries-empty").hidden = deliveries.length > 0;
}

async function load() {
  if (!shown) return;
  const status = $("delivery-status").value;
  const data = await gql(Q_DELIVERIES, { endpoint: shown.id, status: status ? [status] : null });
  render(data.webhookDeliveries.nodes);
}

async function redeliver(delivery, button) {
  try {
    await busy([button], async () => {
      const payload = (await gql(M_REDELIVER, { input: { deliveryId: delivery.id } })).redeliverWebhook;
      if (payload.userErrors.length) return showBanner(payload.userErrors[0].message);
      await load();
    });
  } catch (error) {
    onError(error);
  }
}

/** Shows `endpoint`'s delivery log under the endpoints. */
export async function openDeliveries(endpoint) {
  shown = endpoint;
  $("delivery-log-title").textContent = `Deliveries to ${endpoint.url}`;
  $("delivery-log").hidden = false;
  try {
    await load();
  } catch (error) {
    onError(error);
  }
}

export function initWebhookLog(handleError) {
  onError = handleError;
  const reload = () => load().catch(onError);
  $("delivery-status").addEventListener("change", reload);
  $("delivery-refresh").addEventListener("click", reload);
  $("delivery-close").addEventListener("click", () => {
    shown = null;
    $("delivery-log").hidden = true;
  });
}
