//! What a request needs of the key it came with.

use std::net::IpAddr;

/// One of a tenant's two clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// The company's own staff.
    Employee,
    /// The academies of the company's customers.
    Customer,
}

impl Cloud {
    /// The name Latchkey uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Employee => "EMPLOYEE",
            Cloud::Customer => "CUSTOMER",
        }
    }

    /// Reads a wire name (any case).
    pub fn parse(name: &str) -> Option<Cloud> {
        if name.eq_ignore_ascii_case("EMPLOYEE") {
            Some(Cloud::Employee)
        } else if name.eq_ignore_ascii_case("CUSTOMER") {
            Some(Cloud::Customer)
        } else {
            None
        }
    }
}

/// What a request needs of its key, as `/v1/keys/verify` takes it: the
/// cloud it is for, the permissions it needs, the end client's address and
/// what it spends of the key's rate limits and credits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The cloud the request is for; none for either.
    pub cloud: Option<Cloud>,
    /// Permission names the request needs (at most 64).
    pub permissions: Vec<String>,
    /// The end client's address (checked against a key's allowed networks).
    pub ip: Option<IpAddr>,
    /// What the request spends of a limited key's rate limits and credits (0 to 1,000).
    pub cost: u16,
}

impl Default for RequestContext {
    fn default() -> Self {
        RequestContext { cloud: None, permissions: Vec::new(), ip: None, cost: 1 }
    }
}

impl RequestContext {
    /// A request that needs nothing in particular (cost 1).
    pub fn new() -> Self {
        RequestContext::default()
    }

    /// For `cloud`.
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Needing these permissions.
    pub fn permissions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions = names.into_iter().map(Into::into).collect();
        self
    }

    /// From this end client.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Spending `cost` of a limited key's budgets.
    pub fn cost(mut self, cost: u16) -> Self {
        self.cost = cost;
        self
    }
}
