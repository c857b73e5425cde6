// "Sign in with your organisation": the OpenID Connect authorization-code
// flow with PKCE (RFC 7636) against the company's identity provider, as a
// public client. The verifier and state live in sessionStorage only
// for the round trip; the access token the provider returns is what the page
// sends to Latchkey, which checks it against the provider's published keys.

const FLOW_KEY = "latchkey.signInFlow";

/** The provider and client the server is configured with, or null. */
export async function organisationSignIn() {
  let response;
  try {
    response = await fetch("/api-keys/sign-in.json");
  } catch {
    throw new Error("Cannot reach the server to offer organisation sign-in.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || "Organisation sign-in is unavailable.");
  return body.oidc || null;
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** This page, without query or fragment: the redirect URI registered at the provider. */
function redirectUri() {
  return location.origin + location.pathname;
}

/** Leaves for the provider's sign-in. */
export async function beginSignIn(options) {
  const verifier = randomString();
  const flow = { state: randomString(), verifier, search: location.search };
  sessionStorage.setItem(FLOW_KEY, JSON.stringify(flow));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const url = new URL(options.authorizationEndpoint);
  for (const [name, value] of Object.entries(options.extraParams || {})) url.searchParams.set(name, value);
  const params = {
    response_type: "code",
    client_id: options.clientId,
    redirect_uri: redirectUri(),
    scope: options.scope,
    state: flow.state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  location.assign(url.toString());
}

/** Whether this load is the provider sending the browser back. */
export function isSignInReturn() {
  const params = new URLSearchParams(location.search);
  return (params.has("code") || params.has("error")) && params.has("state");
}

/** Completes the flow on return: checks the state, exchanges the code (with
 * the verifier) for an access token, and restores the address the flow left
 * from. Throws with a message to show when the sign-in failed. */
export async function finishSignIn(options) {
  const params = new URLSearchParams(location.search);
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
  sessionStorage.removeItem(FLOW_KEY);
  history.replaceState(null, "", location.pathname + ((flow && flow.search) || ""));
  if (!flow || params.get("state") !== flow.state) {
    throw new Error("The sign-in answer does not belong to a sign-in started here; sign in again.");
  }
  if (params.has("error")) {
    throw new Error(`The identity provider refused the sign-in: ${params.get("error_description") || params.get("error")}`);
  }
  let response;
  try {
    response = await fetch(options.tokenEndpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: redirectUri(),
        client_id: options.clientId,
        code_verifier: flow.verifier,
      }),
    });
  } catch {
    throw new Error("Cannot reach the identity provider to finish signing in.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) {
    throw new Error(`The identity provider did not issue a token: ${body.error_description || body.error || response.status}`);
  }
  return body.access_token;
}
