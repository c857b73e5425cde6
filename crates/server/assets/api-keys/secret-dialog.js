// The secret, shown once: copy it, or confirm closing without copying. It
// leaves the DOM when the dialog closes.

import { $, closeDialog, openDialog } from "./ui.js";

let copied = false;

export function showSecret(secret, title) {
  copied = false;
  $("secret-title").textContent = title;
  $("secret-value").textContent = secret;
  $("copy-status").textContent = "";
  $("secret-confirm").hidden = true;
  $("secret-actions").hidden = false;
  openDialog($("secret-dialog"), $("generate"));
}

export function dropSecret() {
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

async function copySecret() {
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
}

export function initSecretDialog() {
  $("copy-secret").addEventListener("click", copySecret);
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
}
