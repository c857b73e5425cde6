// What the page knows: the session and the loaded page of the key table.

export const TOKEN_KEY = "latchkey.adminToken";

export const state = {
  /** Which section this address shows: the key table or the webhooks. */
  page: location.pathname.endsWith("/webhooks") ? "webhooks" : "keys",
  token: null,
  viewer: null,
  candidates: [],
  /** The permission catalogue: { name, description, cloud }. */
  permissions: [],
  keys: [],
  after: null,
  hasMore: false,
  total: 0,
  /** Whether more keys match than `total` (the count stops at 10,000). */
  totalCapped: false,
  search: "",
  owner: "",
  /** Only keys unused for 90 days. */
  unused: false,
  /** Only keys that break the key policy. */
  violates: false,
  /** The tenant's key policy, as `tenantKeyPolicy` gives it. */
  policy: null,
  loadSeq: 0,
  rendered: false,
};
