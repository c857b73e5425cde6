// The key panel's "Limits and credits": edit its rate limits and credits,
// and add credits.

import { M_ADD_CREDITS, M_UPDATE_LIMITS, gql } from "./graphql.js";
import { limitErrorFields, readLimitFields, renderLimitFields, sameCredits } from "./limits-form.js";
import { $, busy, clearFieldErrors, showUserErrors } from "./ui.js";

const PREFIX = "detail-l";
let showing = null;

/** Shows `key`'s limits and credits in the panel. */
export function showLimits(key) {
  showing = key;
  clearFieldErrors($("detail-limits-form"));
  clearFieldErrors($("detail-topup-form"));
  renderLimitFields($("detail-limits"), key, PREFIX);
  $("detail-topup-form").hidden = !key.credits;
  $("detail-topup").value = "";
}

/** `onSaved` gets the key as the server now has it. */
export function initLimitsPanel(onError, onSaved) {
  const saved = (key) => {
    onSaved(key);
    showLimits(key);
    $("detail-limits-status").textContent = "Saved. The change applies at once.";
  };
  $("detail-limits-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    $("detail-limits-status").textContent = "";
    const { rateLimits, credits } = readLimitFields($("detail-limits"), PREFIX);
    const input = { id: showing.id, rateLimits };
    // Credits sent again would start a new period: only when changed.
    if (!sameCredits(showing, credits)) input.credits = credits;
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_UPDATE_LIMITS, { input })).updateApiKeyLimits;
        if (showUserErrors(result.userErrors, limitErrorFields(PREFIX))) return;
        saved(result.apiKey);
      } catch (error) {
        onError(error);
      }
    });
  });
  $("detail-topup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    const input = { id: showing.id, amount: Number($("detail-topup").value) };
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_ADD_CREDITS, { input })).addApiKeyCredits;
        if (showUserErrors(result.userErrors, { amount: "detail-topup" })) return;
        saved(result.apiKey);
      } catch (error) {
        onError(error);
      }
    });
  });
}
