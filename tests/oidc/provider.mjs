// A real OpenID Connect provider for Latchkey's end-to-end tests: the
// certified `oidc-provider`, configured as a company's identity provider would
// be — a public client for the API keys page (authorization code + PKCE),
// JWT access tokens for Latchkey's audience with the tenant and email claims,
// signing keys the tests choose (to rotate them). The test starts it on a free
// port (or, to restart it with other keys, the port it had) and reads its
// issuer from the first line it prints.
//
// Environment:
//   OIDC_PORT        port to listen on (0 or unset: a free one)
//   OIDC_KEYS_FILE   where private keys are kept across restarts (JSON, by kid)
//   OIDC_KEYS        published keys, signing order first: "kid:ALG,kid:ALG"
//   OIDC_AUDIENCE    the `aud` of access tokens for Latchkey
//   OIDC_ACCOUNTS    JSON [{sub, email, email_verified, tid}]
//   OIDC_CLIENT_ID   the page's client id
//   OIDC_PAGE_PATH   the page's path (its redirect URI on any loopback port, RFC 8252)
//   OIDC_ACCESS_TOKEN_TTL  access tokens' lifetime in seconds (default 3600)
//
// Access tokens are asked for with a resource indicator (RFC 8707): the
// audience itself, optionally with `?alg=PS256` to choose the algorithm;
// any other https resource gets a token for that other audience.

import { generateKeyPairSync } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import Provider, { errors } from "oidc-provider";

const env = (name, fallback) => process.env[name] ?? fallback;
const audience = env("OIDC_AUDIENCE", "api://latchkey");
const clientId = env("OIDC_CLIENT_ID", "latchkey-console");
const pagePath = env("OIDC_PAGE_PATH", "/settings/integrations/api");
const accounts = new Map(JSON.parse(env("OIDC_ACCOUNTS", "[]")).map((a) => [a.sub, a]));

/** The published private keys, made once per kid and kept in the keys file. */
function signingKeys() {
  const file = env("OIDC_KEYS_FILE", "");
  const kept = file && existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {};
  const published = env("OIDC_KEYS", "rsa-1:RS256,ec-1:ES256")
    .split(",")
    .map((entry) => entry.trim().split(":"));
  for (const [kid, alg] of published) {
    if (kept[kid]) continue;
    const pair = alg.startsWith("ES")
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : generateKeyPairSync("rsa", { modulusLength: 2048 });
    kept[kid] = { ...pair.privateKey.export({ format: "jwk" }), kid, use: "sig" };
  }
  if (file) writeFileSync(file, JSON.stringify(kept));
  return { keys: published.map(([kid]) => kept[kid]), firstAlg: published[0][1] };
}

const page = (title, body) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const loginForm = (uid, message = "") =>
  page(
    "Sign in · Test identity provider",
    `<h1>Test identity provider</h1><p id="message">${message}</p>
     <form method="post" action="/interaction/${uid}/login">
       <label for="login">Username</label> <input id="login" name="login" autocomplete="off">
       <button id="sign-in" type="submit">Sign in</button>
     </form>`,
  );

async function readForm(req) {
  let body = "";
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

/** Consent is implied for this first-party client: grant what was asked. */
async function grantConsent(provider, details) {
  const { prompt, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  return { consent: { grantId: await grant.save() } };
}

/** The login and consent steps: a username form (or `login_hint`), then consent granted. */
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const finish = (result, merge) => provider.interactionFinished(req, res, result, { mergeWithLastSubmission: merge });
  if (details.prompt.name === "consent") return finish(await grantConsent(provider, details), true);
  let login = details.params.login_hint;
  if (req.method === "POST") login = (await readForm(req)).get("login");
  if (login && accounts.has(login)) return finish({ login: { accountId: login } }, false);
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(loginForm(details.uid, login ? "Unknown user." : ""));
}

const server = createServer();
server.listen(Number(env("OIDC_PORT", "0")), "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { keys, firstAlg } = signingKeys();
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        application_type: "native",
        token_endpoint_auth_method: "none",
        grant_types: ["authorization_code"],
        response_types: ["code"],
        redirect_uris: [`http://127.0.0.1${pagePath}`],
        // ID tokens are signed with the first published key.
        id_token_signed_response_alg: firstAlg,
      },
    ],
    jwks: { keys },
    pkce: { required: () => true },
    ttl: { AccessToken: Number(env("OIDC_ACCESS_TOKEN_TTL", "3600")) },
    cookies: { keys: ["latchkey-test-identity-provider"] },
    claims: { openid: ["sub"], email: ["email", "email_verified"] },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const [resource, query] = indicator.split("?");
          const alg = new URLSearchParams(query ?? "").get("alg") ?? "RS256";
          if (resource !== audience && !resource.startsWith("https://")) throw new errors.InvalidTarget();
          return { audience: resource, scope: "latchkey", accessTokenFormat: "jwt", jwt: { sign: { alg } } };
        },
      },
    },
    enabledJWA: { authorizationSigningAlgValues: ["RS256", "PS256", "ES256"] },
    // The page calls the token endpoint from its own origin (any loopback port).
    clientBasedCORS: (ctx, origin) => /^http:\/\/127\.0\.0\.1:\d+$/.test(origin),
    interactions: { url: (ctx, details) => `/interaction/${details.uid}` },
    findAccount: (ctx, sub) => {
      const account = accounts.get(sub);
      return account && { accountId: sub, claims: () => ({ sub, email: account.email, email_verified: account.email_verified }) };
    },
    // What a company's provider adds to Latchkey's access tokens.
    extraTokenClaims: (ctx, token) => {
      const account = token.kind === "AccessToken" && accounts.get(token.accountId);
      if (!account) return undefined;
      return { tid: account.tid, email: account.email, email_verified: account.email_verified, nbf: token.iat };
    },
  });
  const callback = provider.callback();
  server.on("request", (req, res) => {
    if (req.url.startsWith("/interaction/")) {
      interaction(provider, req, res).catch((error) => {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end(String(error));
      });
    } else {
      callback(req, res);
    }
  });
  console.log(JSON.stringify({ issuer }));
});
