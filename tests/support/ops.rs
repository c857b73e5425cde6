//! The GraphQL operations of the e2e suite, written once, each selecting
//! every field a test may look at.

/// `generateApiKey` (variables: `input`).
pub const GENERATE: &str = "mutation($input: GenerateApiKeyInput!) { generateApiKey(input: $input) { \
    secret apiKey { id lastFour description owner { id name role } createdAt createdBy { id } lastEditedAt lastEditedBy { id } lastUsedAt } \
    userErrors { field message code } } }";

/// `rotateApiKey` (variables: `id`).
pub const ROTATE: &str = "mutation($id: ID!) { rotateApiKey(input: {id: $id}) { \
    secret apiKey { id lastFour lastEditedAt lastEditedBy { id } createdAt } userErrors { field message code } } }";

/// `updateApiKeyDescription` (variables: `id`, `d`).
pub const UPDATE_DESCRIPTION: &str = "mutation($id: ID!, $d: String!) { updateApiKeyDescription(input: {id: $id, description: $d}) { \
    apiKey { id description lastFour lastEditedAt lastEditedBy { id } } userErrors { field message code } } }";

/// `deleteApiKey` (variables: `id`).
pub const DELETE: &str =
    "mutation($id: ID!) { deleteApiKey(input: {id: $id}) { deletedApiKeyId userErrors { field message code } } }";

/// `apiKey` (variables: `id`).
pub const GET_KEY: &str = "query($id: ID!) { apiKey(id: $id) { id lastFour description owner { id } createdAt \
    lastEditedAt lastEditedBy { id } lastUsedAt } }";

/// What the lifecycle tests look at on a key, and the user errors.
macro_rules! key_state {
    () => {
        "apiKey { id lastFour status expiresAt previousSecretExpiresAt previousLastFour } userErrors { field message code }"
    };
}

/// `rotateApiKey` with a whole input (variables: `input`).
pub const ROTATE_WITH: &str =
    concat!("mutation($input: RotateApiKeyInput!) { rotateApiKey(input: $input) { secret ", key_state!(), " } }");

/// `expireApiKeyPreviousSecret` (variables: `id`).
pub const EXPIRE_PREVIOUS: &str =
    concat!("mutation($id: ID!) { expireApiKeyPreviousSecret(input: {id: $id}) { ", key_state!(), " } }");

/// `setApiKeyExpiry` (variables: `input`).
pub const SET_EXPIRY: &str =
    concat!("mutation($input: SetApiKeyExpiryInput!) { setApiKeyExpiry(input: $input) { ", key_state!(), " } }");

/// `disableApiKey` (variables: `id`).
pub const DISABLE: &str = concat!("mutation($id: ID!) { disableApiKey(input: {id: $id}) { ", key_state!(), " } }");

/// `enableApiKey` (variables: `id`).
pub const ENABLE: &str = concat!("mutation($id: ID!) { enableApiKey(input: {id: $id}) { ", key_state!(), " } }");

/// `apiKey` with its lifecycle fields (variables: `id`).
pub const GET_KEY_STATE: &str = "query($id: ID!) { apiKey(id: $id) { id lastFour status expiresAt \
    previousSecretExpiresAt previousLastFour } }";

/// `generateApiKey` with its restrictions (variables: `input`).
pub const GENERATE_RESTRICTED: &str = "mutation($input: GenerateApiKeyInput!) { generateApiKey(input: $input) { \
    secret apiKey { id restrictions { permissions clouds allowedIps } } userErrors { field message code } } }";

/// `updateApiKeyRestrictions` (variables: `input`).
pub const UPDATE_RESTRICTIONS: &str = "mutation($input: UpdateApiKeyRestrictionsInput!) { \
    updateApiKeyRestrictions(input: $input) { apiKey { id restrictions { permissions clouds allowedIps } } \
    userErrors { field message code } } }";

/// What the limit tests look at on a key.
macro_rules! key_limits {
    () => {
        "apiKey { id rateLimits { name limit periodSeconds } credits { remaining lastRefilledAt refill { amount interval day } } } \
         userErrors { field message code }"
    };
}

/// `generateApiKey` with limits and credits (variables: `input`).
pub const GENERATE_LIMITED: &str =
    concat!("mutation($input: GenerateApiKeyInput!) { generateApiKey(input: $input) { secret ", key_limits!(), " } }");

/// `updateApiKeyLimits` (variables: `input`).
pub const UPDATE_LIMITS: &str =
    concat!("mutation($input: UpdateApiKeyLimitsInput!) { updateApiKeyLimits(input: $input) { ", key_limits!(), " } }");

/// `addApiKeyCredits` (variables: `id`, `amount`).
pub const ADD_CREDITS: &str = concat!(
    "mutation($id: ID!, $amount: Int!) { addApiKeyCredits(input: {id: $id, amount: $amount}) { ",
    key_limits!(),
    " } }"
);

/// `apiKey` with its limits and credits (variables: `id`).
pub const GET_KEY_LIMITS: &str = "query($id: ID!) { apiKey(id: $id) { id rateLimits { name limit periodSeconds } \
    credits { remaining lastRefilledAt refill { amount interval day } } } }";

/// `setOwnerRateLimits` (variables: `input`).
pub const SET_OWNER_LIMITS: &str = "mutation($input: SetOwnerRateLimitsInput!) { setOwnerRateLimits(input: $input) { \
    user { id rateLimits { name limit periodSeconds } } userErrors { field message code } } }";
