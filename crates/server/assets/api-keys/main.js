// The API keys page (Settings › Integrations › API): a reference admin console
// page over Latchkey's GraphQL API, as plain ES modules, one per concern.
// Every user-supplied string is rendered with textContent; the admin token
// lives in sessionStorage only.

import { confirmDelete, confirmDisable, confirmEndOverlap, enable, initConfirmDialog } from "./confirm-dialog.js";
import { initDetailPanel, openDetail, reloadDetail } from "./detail-panel.js";
import { initEditDialog, openEdit } from "./edit-dialog.js";
import { initGenerateDialog } from "./generate-dialog.js";
import { initLimitsPanel } from "./limits-panel.js";
import { initReport } from "./report.js";
import { initRestrictionsDialog, openRestrictions } from "./restrictions-dialog.js";
import { initRotateDialog, openRotate } from "./rotate-dialog.js";
import { initSecretDialog } from "./secret-dialog.js";
import { handleError, initSession } from "./session.js";
import { initTable, replaceKey } from "./table.js";
import { initTransferDialog, openTransfer } from "./transfer-dialog.js";
import { initDialogs } from "./ui.js";

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
initSession();
