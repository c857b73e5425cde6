//! Least privilege: what a key may do (permissions), where (clouds) and from
//! which networks (addresses and CIDRs), and the one rule that decides a
//! request against them. Pure: the verifier and the GraphQL front end both
//! call [`Restrictions::decide`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Violation, ViolationCode};
use crate::tenancy::{Cloud, Role};

/// One permission of the platform's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// Its name, e.g. `users:read`.
    pub name: &'static str,
    /// What it allows.
    pub description: &'static str,
    /// The one cloud it belongs to; none for both.
    pub cloud: Option<Cloud>,
}

/// Every permission, in the order admins see them. Adding one is one line here.
pub const PERMISSIONS: &[Permission] = &[
    Permission { name: "users:read", description: "Read users and their profiles.", cloud: None },
    Permission { name: "users:write", description: "Create, update and deactivate users.", cloud: None },
    Permission { name: "groups:read", description: "Read groups and their members.", cloud: None },
    Permission { name: "groups:write", description: "Create, update and delete groups; change members.", cloud: None },
    Permission { name: "content:read", description: "Read guides, courses and learning paths.", cloud: None },
    Permission {
        name: "content:write",
        description: "Create, update and delete guides, courses and learning paths.",
        cloud: None,
    },
    Permission { name: "enrollments:read", description: "Read enrollments and progress.", cloud: None },
    Permission { name: "enrollments:write", description: "Enroll and unenroll users.", cloud: None },
    Permission { name: "reports:read", description: "Read reports and exports.", cloud: None },
    Permission { name: "academies:read", description: "Read academies.", cloud: Some(Cloud::Customer) },
    Permission {
        name: "academies:write",
        description: "Create, update and delete academies.",
        cloud: Some(Cloud::Customer),
    },
    Permission { name: "scim", description: "Provision users and groups with SCIM 2.0.", cloud: None },
    Permission {
        name: "verify:stream",
        description: "Read the verification stream: which keys of the tenant were revoked or changed.",
        cloud: None,
    },
];

/// The permission named `name`, if there is one.
pub fn permission(name: &str) -> Option<&'static Permission> {
    PERMISSIONS.iter().find(|p| p.name == name)
}

/// What a key's owner may do: a key never does more than its owner. Today an
/// internal admin or an integration user (the roles that may own keys) may do
/// everything; a narrower role model changes only this function.
pub fn owner_permissions(role: Role) -> PermissionSet {
    match role {
        Role::InternalAdmin | Role::IntegrationUser => PermissionSet::all(),
        Role::AcademyAdmin => PermissionSet::none(),
    }
}

/// A set of permissions, as indices into [`PERMISSIONS`]: checking a request
/// against it is a few bit operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u64);

impl PermissionSet {
    /// No permission.
    pub const fn none() -> Self {
        PermissionSet(0)
    }

    /// Every permission.
    pub fn all() -> Self {
        PermissionSet(u64::MAX >> (64 - PERMISSIONS.len()))
    }

    /// The permissions named; `Err` names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, &'a str> {
        names.into_iter().try_fold(PermissionSet::none(), |set, name| {
            let index = PERMISSIONS.iter().position(|p| p.name == name).ok_or(name)?;
            Ok(PermissionSet(set.0 | 1 << index))
        })
    }

    /// The permissions that apply in `cloud`: its own and those of both.
    pub fn of_cloud(cloud: Cloud) -> Self {
        PERMISSIONS.iter().enumerate().fold(PermissionSet::none(), |set, (i, p)| {
            if p.cloud.is_none_or(|c| c == cloud) { PermissionSet(set.0 | 1 << i) } else { set }
        })
    }

    /// Whether it holds every permission of `other`.
    pub fn contains_all(self, other: PermissionSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// The permissions of both.
    pub fn intersection(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 & other.0)
    }

    /// The names, in catalogue order.
    pub fn names(self) -> Vec<&'static str> {
        PERMISSIONS.iter().enumerate().filter(|(i, _)| self.0 & 1 << i != 0).map(|(_, p)| p.name).collect()
    }
}

/// An allowed network: one address, or a CIDR block. IPv4-mapped IPv6
/// addresses (`::ffff:192.0.2.1`) are the IPv4 address they map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Network {
    /// Whether `ip` lies in it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = ();

    /// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`, `::ffff:192.0.2.0/120`.
    /// Host bits below the prefix are ignored (`192.0.2.7/24` is `192.0.2.0/24`).
    fn from_str(raw: &str) -> Result<Self, ()> {
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let parsed: IpAddr = address.parse().map_err(|_| ())?;
        let max: u8 = if parsed.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: no sign, no spaces.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| ())?
            }
            Some(_) => return Err(()),
        };
        if prefix > max {
            return Err(());
        }
        // A mapped IPv6 block of at least the mapped range is an IPv4 block.
        match parsed {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                Ok(Network { address: canonical(parsed), prefix: prefix - 96 })
            }
            _ => Ok(Network { address: parsed, prefix }),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.address.is_ipv4() { 32 } else { 128 };
        if self.prefix == max { write!(f, "{}", self.address) } else { write!(f, "{}/{}", self.address, self.prefix) }
    }
}

/// Most entries of an address allowlist.
pub const MAX_ALLOWED_NETWORKS: usize = 50;

/// What a key may do, where and from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Restrictions {
    /// Its permissions; none for unrestricted (every key from before restrictions).
    pub permissions: Option<PermissionSet>,
    /// The clouds it works in (at least one).
    pub clouds: BTreeSet<Cloud>,
    /// The networks it may be used from; empty for any.
    pub allowed_networks: Vec<Network>,
}

impl Default for Restrictions {
    /// Unrestricted: every permission, both clouds, any address.
    fn default() -> Self {
        Restrictions { permissions: None, clouds: Cloud::ALL.iter().copied().collect(), allowed_networks: Vec::new() }
    }
}

/// Which input of [`Restrictions::parse`] was refused: `permissions`,
/// `clouds` or `allowedIps`, with a message naming the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestrictionViolation {
    /// The input field.
    pub field: &'static str,
    /// What is wrong.
    pub violation: Violation,
}

/// An entry as an error message may quote it: one line, at most 60 characters.
fn shown(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(60).collect()
}

fn invalid(field: &'static str, message: String) -> RestrictionViolation {
    RestrictionViolation { field, violation: Violation::new(ViolationCode::Invalid, message) }
}

impl Restrictions {
    /// Checks restrictions as an admin gives them; every problem is reported.
    pub fn parse(
        permissions: Option<&[String]>,
        clouds: &[Cloud],
        allowed_ips: &[String],
    ) -> Result<Self, Vec<RestrictionViolation>> {
        let mut problems = Vec::new();
        let permissions = permissions.and_then(|names| {
            PermissionSet::parse(names.iter().map(String::as_str))
                .map_err(|unknown| {
                    problems.push(invalid("permissions", format!("“{}” is not a permission.", shown(unknown))));
                })
                .ok()
        });
        if clouds.is_empty() {
            problems.push(invalid("clouds", "Choose at least one cloud.".into()));
        }
        if let Some(set) = permissions {
            for name in set.names() {
                if let Some(cloud) = permission(name).and_then(|p| p.cloud)
                    && !clouds.is_empty()
                    && !clouds.contains(&cloud)
                {
                    problems.push(invalid(
                        "permissions",
                        format!(
                            "“{name}” is a permission of the {} cloud, which this key does not work in.",
                            cloud.as_str()
                        ),
                    ));
                }
            }
        }
        if allowed_ips.len() > MAX_ALLOWED_NETWORKS {
            problems.push(invalid(
                "allowedIps",
                format!("At most {MAX_ALLOWED_NETWORKS} addresses or networks ({} given).", allowed_ips.len()),
            ));
        }
        let mut allowed_networks = Vec::new();
        for raw in allowed_ips.iter().take(MAX_ALLOWED_NETWORKS) {
            match raw.trim().parse::<Network>() {
                Ok(network) if !allowed_networks.contains(&network) => allowed_networks.push(network),
                Ok(_) => {}
                Err(()) => problems
                    .push(invalid("allowedIps", format!("“{}” is not an IP address or CIDR block.", shown(raw)))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Restrictions { permissions, clouds: clouds.iter().copied().collect(), allowed_networks })
    }

    /// Whether it restricts nothing.
    pub fn is_unrestricted(&self) -> bool {
        *self == Restrictions::default()
    }

    /// Decides a request in the fixed order cloud → address → permissions,
    /// for a key whose owner may do `owner_may`. A check the request gives no
    /// context for is skipped, except the address: a key with an allowlist
    /// is refused without one (never fail open).
    pub fn decide(&self, owner_may: PermissionSet, request: &RequestContext) -> Result<(), Refusal> {
        if let Some(cloud) = request.cloud
            && !self.clouds.contains(&cloud)
        {
            return Err(Refusal::CloudNotAllowed);
        }
        if !self.allowed_networks.is_empty() {
            let allowed = request.ip.is_some_and(|ip| self.allowed_networks.iter().any(|n| n.contains(ip)));
            if !allowed {
                return Err(Refusal::IpNotAllowed);
            }
        }
        // A permission of one cloud is never granted in the other.
        let granted = match request.cloud {
            Some(cloud) => self.effective_permissions(owner_may).intersection(PermissionSet::of_cloud(cloud)),
            None => self.effective_permissions(owner_may),
        };
        if !granted.contains_all(request.permissions) || !request.unknown_permissions.is_empty() {
            let mut missing = PermissionSet(request.permissions.0 & !granted.0).names();
            missing.extend(request.unknown_permissions.iter().map(String::as_str));
            return Err(Refusal::InsufficientPermissions { missing: missing.into_iter().map(str::to_owned).collect() });
        }
        Ok(())
    }

    /// What the key may do: its own permissions (all when unrestricted), never
    /// more than its owner.
    pub fn effective_permissions(&self, owner_may: PermissionSet) -> PermissionSet {
        self.permissions.unwrap_or_else(PermissionSet::all).intersection(owner_may)
    }
}

/// How restrictions are stored: three nullable texts, null meaning
/// unrestricted (so every key from before restrictions is). Names and
/// networks are space-separated in their canonical form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRestrictions {
    /// Permission names; none for unrestricted.
    pub permissions: Option<String>,
    /// Cloud names; none for both.
    pub clouds: Option<String>,
    /// Networks; none for any address.
    pub allowed_ips: Option<String>,
}

impl Restrictions {
    /// The stored form.
    pub fn to_stored(&self) -> StoredRestrictions {
        let both = self.clouds.len() == Cloud::ALL.len();
        StoredRestrictions {
            permissions: self.permissions.map(|p| p.names().join(" ")),
            clouds: (!both).then(|| self.clouds.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" ")),
            allowed_ips: (!self.allowed_networks.is_empty())
                .then(|| self.allowed_networks.iter().map(Network::to_string).collect::<Vec<_>>().join(" ")),
        }
    }

    /// Reads the stored form, failing closed: a permission no longer in the
    /// catalogue is dropped, an unreadable network matches no address, and
    /// no readable cloud means none.
    pub fn from_stored(stored: &StoredRestrictions) -> Self {
        let permissions = stored.permissions.as_deref().map(|names| {
            names.split_whitespace().fold(PermissionSet::none(), |set, name| {
                PermissionSet::parse([name]).map_or(set, |one| PermissionSet(set.0 | one.0))
            })
        });
        let clouds = match stored.clouds.as_deref() {
            None => Cloud::ALL.iter().copied().collect(),
            Some(names) => names.split_whitespace().filter_map(Cloud::parse).collect(),
        };
        let allowed_networks = stored
            .allowed_ips
            .as_deref()
            .map(|all| {
                all.split_whitespace()
                    .map(|n| {
                        n.parse()
                            .unwrap_or(Network { address: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), prefix: 128 })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Restrictions { permissions, clouds, allowed_networks }
    }

    /// One line for people (mail, audit): "full access", or what is allowed.
    pub fn describe(&self) -> String {
        if self.is_unrestricted() {
            return "full access".into();
        }
        let permissions = match self.permissions {
            None => "all permissions".to_owned(),
            Some(p) if p == PermissionSet::none() => "no permissions".to_owned(),
            Some(p) => format!("permissions {}", p.names().join(", ")),
        };
        let clouds = if self.clouds.len() == Cloud::ALL.len() {
            "both clouds".to_owned()
        } else {
            format!("{} cloud only", self.clouds.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))
        };
        let networks = if self.allowed_networks.is_empty() {
            "any address".to_owned()
        } else {
            format!("from {}", self.allowed_networks.iter().map(Network::to_string).collect::<Vec<_>>().join(", "))
        };
        format!("{permissions}; {clouds}; {networks}")
    }
}

/// What a request asks of a key, as the gateway tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The cloud the request is for; none when not told.
    pub cloud: Option<Cloud>,
    /// The permissions it needs (known ones).
    pub permissions: PermissionSet,
    /// Permissions it needs that do not exist (never granted).
    pub unknown_permissions: Vec<String>,
    /// The client's address; none when not told.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` (kept, cleaned by `usage::clean_user_agent`,
    /// as a key's last use); none when not told.
    pub user_agent: Option<String>,
    /// What the request spends of the key's limits and credits (1 unless told).
    pub cost: crate::limits::Cost,
}

impl RequestContext {
    /// A context needing the permissions named (unknown ones are kept, and refused).
    pub fn needing<'a>(
        cloud: Option<Cloud>,
        permissions: impl IntoIterator<Item = &'a str>,
        ip: Option<IpAddr>,
    ) -> Self {
        let mut known = PermissionSet::none();
        let mut unknown = Vec::new();
        for name in permissions {
            match PermissionSet::parse([name]) {
                Ok(one) => known = PermissionSet(known.0 | one.0),
                Err(_) => unknown.push(name.to_owned()),
            }
        }
        RequestContext { cloud, permissions: known, unknown_permissions: unknown, ip, ..RequestContext::default() }
    }
}

/// Why a verified key may not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request is for a cloud the key does not work in.
    CloudNotAllowed,
    /// The request comes from (or does not say) an address outside the allowlist.
    IpNotAllowed,
    /// The key lacks these permissions.
    InsufficientPermissions {
        /// The permissions asked for and not granted.
        missing: Vec<String>,
    },
}

impl Refusal {
    /// The wire code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::CloudNotAllowed => "CLOUD_NOT_ALLOWED",
            Refusal::IpNotAllowed => "IP_NOT_ALLOWED",
            Refusal::InsufficientPermissions { .. } => "INSUFFICIENT_PERMISSIONS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        s.parse().unwrap_or_else(|()| panic!("{s}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_at_the_edges() {
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.7")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")), "an IPv4 block holds no IPv6 address");
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("203.0.113.7/32").contains(ip("203.0.113.7")));
        assert!(!net("203.0.113.7/32").contains(ip("203.0.113.8")));
        assert!(net("203.0.113.7").contains(ip("203.0.113.7")));
        assert!(net("2001:db8::1/128").contains(ip("2001:db8::1")));
        assert!(!net("2001:db8::1/128").contains(ip("2001:db8::2")));
        assert!(net("10.0.0.0/8").contains(ip("10.255.255.255")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(net("192.0.2.7/24").contains(ip("192.0.2.200")), "host bits are ignored");
        // IPv4-mapped IPv6, on either side.
        assert!(net("192.0.2.0/24").contains(ip("::ffff:192.0.2.9")));
        assert!(net("::ffff:192.0.2.0/120").contains(ip("192.0.2.9")));
        assert_eq!(net("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "x",
            "10.0.0.0/8/8",
            " 10.0.0.1",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_permission_of_one_cloud_is_refused_and_never_granted_in_the_other() {
        let err = Restrictions::parse(Some(&["academies:write".into()]), &[Cloud::Employee], &[]).unwrap_err();
        assert_eq!(err[0].field, "permissions");
        assert!(err[0].violation.message.contains("customer cloud"), "{:?}", err[0]);
        assert!(Restrictions::parse(Some(&["academies:write".into()]), &[Cloud::Customer], &[]).is_ok());
        // Even a key that holds it (unrestricted, or stored before this rule) never gets it in the employee cloud.
        let asking = |cloud| RequestContext {
            cloud: Some(cloud),
            permissions: PermissionSet::parse(["academies:write"]).unwrap(),
            ..RequestContext::default()
        };
        let unrestricted = Restrictions::default();
        assert!(unrestricted.decide(PermissionSet::all(), &asking(Cloud::Customer)).is_ok());
        assert!(matches!(
            unrestricted.decide(PermissionSet::all(), &asking(Cloud::Employee)),
            Err(Refusal::InsufficientPermissions { .. })
        ));
    }

    #[test]
    fn parse_names_every_offending_entry() {
        let err = Restrictions::parse(
            Some(&["users:read".into(), "users:delete".into()]),
            &[],
            &["10.0.0.0/8".into(), "300.1.1.1".into()],
        )
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["permissions", "clouds", "allowedIps"]);
        assert!(err[0].violation.message.contains("users:delete"));
        assert!(err[2].violation.message.contains("300.1.1.1"));
        let many: Vec<String> = (0..51).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(Restrictions::parse(None, Cloud::ALL, &many).unwrap_err()[0].field, "allowedIps");
        let ok = Restrictions::parse(None, Cloud::ALL, &[]).unwrap();
        assert!(ok.is_unrestricted());
    }

    #[test]
    fn decisions_follow_the_fixed_order() {
        let r = Restrictions::parse(Some(&["users:read".into()]), &[Cloud::Customer], &["10.0.0.0/8".into()]).unwrap();
        let all = PermissionSet::all();
        let ask = |cloud, perms: &[&str], from: Option<&str>| {
            r.decide(all, &RequestContext::needing(cloud, perms.iter().copied(), from.map(ip)))
        };
        assert_eq!(ask(Some(Cloud::Customer), &["users:read"], Some("10.1.2.3")), Ok(()));
        // The cloud first, then the address: a wrong address learns nothing about permissions.
        assert_eq!(ask(Some(Cloud::Employee), &["users:write"], Some("8.8.8.8")), Err(Refusal::CloudNotAllowed));
        assert_eq!(ask(Some(Cloud::Customer), &["users:write"], Some("8.8.8.8")), Err(Refusal::IpNotAllowed));
        assert_eq!(ask(None, &[], None), Err(Refusal::IpNotAllowed), "never fail open without an address");
        assert_eq!(
            ask(None, &["users:write", "users:read", "nope"], Some("10.0.0.1")),
            Err(Refusal::InsufficientPermissions { missing: vec!["users:write".into(), "nope".into()] })
        );
        // Never more than the owner.
        let owner = PermissionSet::parse(["groups:read"]).unwrap();
        let req = RequestContext::needing(None, ["users:read"], Some(ip("10.0.0.1")));
        assert!(matches!(r.decide(owner, &req), Err(Refusal::InsufficientPermissions { .. })));
        assert_eq!(PermissionSet::all().names().len(), PERMISSIONS.len());
    }

    #[test]
    fn stored_form_round_trips_and_fails_closed() {
        let r = Restrictions::parse(
            Some(&["users:read".into(), "scim".into()]),
            &[Cloud::Customer],
            &["10.0.0.0/8".into(), "2001:db8::1".into()],
        )
        .unwrap();
        assert_eq!(Restrictions::from_stored(&r.to_stored()), r);
        assert_eq!(Restrictions::from_stored(&StoredRestrictions::default()), Restrictions::default());
        assert_eq!(Restrictions::default().to_stored(), StoredRestrictions::default());
        assert_eq!(r.describe(), "permissions users:read, scim; customer cloud only; from 10.0.0.0/8, 2001:db8::1");
        let damaged = StoredRestrictions {
            permissions: Some("users:read retired:perm".into()),
            clouds: Some("moon".into()),
            allowed_ips: Some("not-a-network".into()),
        };
        let read = Restrictions::from_stored(&damaged);
        assert_eq!(read.permissions.map(PermissionSet::names), Some(vec!["users:read"]));
        assert!(read.clouds.is_empty());
        let any = RequestContext::needing(None, [], Some(ip("10.0.0.1")));
        assert_eq!(read.decide(PermissionSet::all(), &any), Err(Refusal::IpNotAllowed));
    }
}
