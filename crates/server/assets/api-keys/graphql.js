// The GraphQL client: the page's operations and one way to send them.

import { state } from "./state.js";

const KEY_FIELDS = `id lastFour description createdAt lastEditedAt lastUsedAt usage30d
  status expiresAt previousSecretExpiresAt previousLastFour restrictions { permissions clouds allowedIps }
  owner { id name role } createdBy { id name } lastEditedBy { id name }
  rateLimits { name limit periodSeconds } credits { remaining lastRefilledAt refill { amount interval day } }
  policyViolations selfRotation disabledReason unusedDisableAt`;
const POLICY_FIELDS = `maxLifetimeDays requireExpiry requireRestrictions maxOverlapSeconds disableUnusedAfterDays maxKeysPerOwner`;
const KEY_PAYLOAD = `apiKey { ${KEY_FIELDS} } userErrors { field message code }`;
export const Q_VIEWER = `{ viewer { tenant { id name } user { id name role } clouds } apiKeyOwnerCandidates { id name role }
  apiKeyPermissions { name description cloud } tenantKeyPolicy { ${POLICY_FIELDS} } }`;
export const Q_WHO = `{ viewer { tenant { id name } user { id name } } }`;
/** A page of the key table; `withTotal` adds the count of matching keys, which costs a read of every
 * match (up to 10,000: past it the count says so), so only the first page of a filter asks for it. */
const keysQuery = (withTotal) => `query($first: Int, $after: String, $search: String, $ownerId: ID, $unused: Int,
  $violates: Boolean, $from: DateTime!, $to: DateTime!) {
  apiKeys(first: $first, after: $after, search: $search, ownerId: $ownerId, unusedForDays: $unused,
    violatesPolicy: $violates) {
    ${withTotal ? "totalCount totalCountCapped" : ""} pageInfo { hasNextPage endCursor }
    nodes { ${KEY_FIELDS} daily: usage(from: $from, to: $to, granularity: DAY) { buckets { valid } } } } }`;
export const Q_KEYS = keysQuery(true);
export const Q_MORE_KEYS = keysQuery(false);
/** A key's detail panel: last use, a series (by day or hour) and its audit trail. */
export const Q_KEY_DETAIL = `query($id: ID!, $from: DateTime!, $to: DateTime!, $granularity: UsageGranularity!) {
  apiKey(id: $id) { id lastFour description lastUsed { at cloud clientAddress userAgent }
    usage(from: $from, to: $to, granularity: $granularity) { valid refused buckets { start valid refused } } }
  apiKeyEvents(keyId: $id, first: 20) { nodes { id action occurredAt actorName } } }`;
export const Q_REPORT = `{ apiKeyCredentialReport }`;
export const M_UPDATE_LIMITS = `mutation($input: UpdateApiKeyLimitsInput!) { updateApiKeyLimits(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_ADD_CREDITS = `mutation($input: AddApiKeyCreditsInput!) { addApiKeyCredits(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_GENERATE = `mutation($input: GenerateApiKeyInput!) { generateApiKey(input: $input) {
  secret ${KEY_PAYLOAD} } }`;
export const M_ROTATE = `mutation($input: RotateApiKeyInput!) { rotateApiKey(input: $input) { secret ${KEY_PAYLOAD} } }`;
export const M_EDIT = `mutation($input: UpdateApiKeyDescriptionInput!) { updateApiKeyDescription(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_EXPIRE_PREVIOUS = `mutation($input: ApiKeyIdInput!) { expireApiKeyPreviousSecret(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_DISABLE = `mutation($input: ApiKeyIdInput!) { disableApiKey(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_ENABLE = `mutation($input: ApiKeyIdInput!) { enableApiKey(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_RESTRICT = `mutation($input: UpdateApiKeyRestrictionsInput!) { updateApiKeyRestrictions(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_TRANSFER = `mutation($input: TransferApiKeyInput!) { transferApiKey(input: $input) { ${KEY_PAYLOAD} } }`;
export const M_TRANSFER_ALL = `mutation($input: TransferApiKeysInput!) { transferApiKeys(input: $input) {
  apiKeys { id } userErrors { field message code } } }`;
export const M_UPDATE_POLICY = `mutation($input: UpdateTenantKeyPolicyInput!) { updateTenantKeyPolicy(input: $input) {
  policy { ${POLICY_FIELDS} } userErrors { field message code } } }`;
export const M_SET_SELF_ROTATION = `mutation($input: SetApiKeySelfRotationInput!) { setApiKeySelfRotation(input: $input) {
  ${KEY_PAYLOAD} } }`;
export const M_DELETE = `mutation($input: DeleteApiKeyInput!) { deleteApiKey(input: $input) {
  deletedApiKeyId userErrors { field message code } } }`;

/** The token was refused, or its holder may not do this: sign in again. */
export class AuthError extends Error {}

/** Sends one operation with `token` (the session's by default); returns its data. */
export async function gql(query, variables = {}, token = state.token) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new Error("Cannot reach the server. Check your connection and try again.");
  }
  if (!response.ok) throw new Error(`The server answered ${response.status}. Please try again.`);
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = body.errors[0];
    const code = error.extensions && error.extensions.code;
    if (code === "UNAUTHENTICATED" || code === "FORBIDDEN") throw new AuthError(error.message);
    throw new Error(error.message || "Something went wrong.");
  }
  return body.data;
}
