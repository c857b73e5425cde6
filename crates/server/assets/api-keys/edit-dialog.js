// Edit a key's description.

import { M_EDIT, gql } from "./graphql.js";
import { replaceKey } from "./table.js";
import { $, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

let editing = null;

/** Row action: opens the dialog for `key`. */
export function openEdit(key, button) {
  hideBanner();
  editing = key;
  clearFieldErrors($("edit-form"));
  $("edit-description").value = key.description;
  openDialog($("edit-dialog"), button);
  $("edit-description").select();
}

export function initEditDialog(onError) {
  $("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const input = { id: editing.id, description: $("edit-description").value };
        const result = (await gql(M_EDIT, { input })).updateApiKeyDescription;
        if (showUserErrors(result.userErrors, { description: "edit-description" })) return;
        replaceKey(result.apiKey);
        closeDialog($("edit-dialog"));
      } catch (error) {
        closeDialog($("edit-dialog"));
        onError(error);
      }
    });
  });
}
