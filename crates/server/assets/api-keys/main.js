// The API keys page (Settings › Integrations › API) and the Webhooks page
// beside it: a reference admin console over Latchkey's GraphQL API, as plain
// ES modules, one per concern.
// Every user-supplied string is rendered with textContent; the admin token
// lives in sessionStorage only.

import { confirmDelete, confirmDisable, confirmEndOverlap, enable, initConfirmDialog } from "./confirm-dialog.js";
import { initDetailPanel, openDetail, reloadDetail } from "./detail-panel.js";
import { initEditDialog, openEdit } from "./edit-dialog.js";
import { initGenerateDialog } from "./generate-dialog.js";
import { initKeyPolicy, toggleSelfRotation } from "./key-policy.js";
import { initLimitsPanel } from "./limits-panel.js";
import { initReport } from "./report.js";
import { initRestrictionsDialog, openRestrictions } from "./restrictions-dialog.js";
import { initRotateDialog, openRotate } from "./rotate-dialog.js";
import { initSecretDialog } from "./secret-dialog.js";
import { handleError, initSession } from "./session.js";
import { initTable, replaceKey } from "./table.js";
import { initTransferDialog, openTransfer } from "./transfer-dialog.js";
import { $, initDialogs } from "./ui.js";
import { initWebhookLog } from "./webhook-log.js";
import { initWebhooks } from "./webhooks.js";
import { state } from "./state.js";

/** The tabs of Settings › Integrations: this address's is current. */
function initTabs() {
  $("tabs").hidden = false;
  $(state.page === "webhooks" ? "tab-webhooks" : "tab-keys").setAttribute("aria-current", "page");
  if (state.page === "webhooks") {
    $("crumb-page").textContent = "Webhooks";
    document.title = "Webhooks · Integrations · Settings";
  }
}

initTabs();
initDialogs();
initSecretDialog();
/** A row's menu: Disable for a key that is on, Enable for one that is off. */
function rowActions(key) {
  const toggle =
    key.status === "DISABLED" ? ["Enable", (k, button) => enable(k, button, handleError)] : ["Disable", confirmDisable];
  return [
    ["Details", openDetail],
    ["Edit", openEdit],
    ["Restrictions", openRestrictions],
    ["Rotate", openRotate],
    ["Transfer", openTransfer],
    [key.selfRotation ? "Stop self-rotation" : "Allow self-rotation", (k) => toggleSelfRotation(k, handleError), "self-rotation"],
    toggle,
    ["Delete", confirmDelete],
  ];
}

initTable(rowActions, confirmEndOverlap, handleError);
initGenerateDialog(handleError);
initEditDialog(handleError);
initConfirmDialog(handleError);
initRotateDialog(handleError);
initRestrictionsDialog(handleError);
initTransferDialog(handleError);
initDetailPanel(handleError);
initLimitsPanel(handleError, (key) => {
  replaceKey(key);
  reloadDetail();
});
initReport(handleError);
initKeyPolicy(handleError);
initWebhooks(handleError);
initWebhookLog(handleError);
initSession();
