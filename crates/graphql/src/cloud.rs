//! The clouds of a tenant, as GraphQL names them (shared by keys, viewers
//! and usage).

use async_graphql::Enum;

/// A cloud of a tenant.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "Cloud", remote = "latchkey_domain::Cloud")]
pub enum GqlCloud {
    /// The employee cloud: the company's own staff.
    Employee,
    /// The customer cloud: the academies of the company's customers.
    Customer,
}
