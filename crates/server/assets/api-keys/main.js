// The API keys page (Settings › Integrations › API): a reference admin console
// page over Latchkey's GraphQL API, as plain ES modules, one per concern.
// Every user-supplied string is rendered with textContent; the admin token
// lives in sessionStorage only.

import { confirmDelete, confirmRotate, initConfirmDialog } from "./confirm-dialog.js";
import { initEditDialog, openEdit } from "./edit-dialog.js";
import { initGenerateDialog } from "./generate-dialog.js";
import { initSecretDialog } from "./secret-dialog.js";
import { handleError, initSession } from "./session.js";
import { initTable } from "./table.js";
import { initDialogs } from "./ui.js";

initDialogs();
initSecretDialog();
initTable([["Edit", openEdit], ["Rotate", confirmRotate], ["Delete", confirmDelete]], handleError);
initGenerateDialog(handleError);
initEditDialog(handleError);
initConfirmDialog(handleError);
initSession();
