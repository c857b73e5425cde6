//! Deciding a request against a cached key, by Latchkey's own rule
//! (`Restrictions::decide` on the server): cloud, then address, then
//! permissions. What the rule needs of the catalogue (which permissions
//! exist, in which order, which belong to one cloud) comes from
//! `GET /v1/permissions`.

use std::net::IpAddr;

use serde::Deserialize;

use crate::context::{Cloud, RequestContext};
use crate::verification::{Refusal, RefusalCode, VerifiedKey};

/// The permission catalogue, as `GET /v1/permissions` gives it.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    /// Names in catalogue order (a few dozen: a scan beats hashing).
    names: Vec<String>,
    /// The permissions that apply in each cloud (its own and both clouds').
    employee: u128,
    customer: u128,
}

#[derive(Deserialize)]
struct CatalogueAnswer {
    permissions: Vec<CatalogueEntry>,
}

#[derive(Deserialize)]
struct CatalogueEntry {
    name: String,
    cloud: Option<String>,
}

impl Catalogue {
    /// Reads the JSON of `GET /v1/permissions`; `None` for anything else
    /// (or a catalogue of more than 128 permissions).
    pub(crate) fn from_json(json: &[u8]) -> Option<Catalogue> {
        let answer: CatalogueAnswer = serde_json::from_slice(json).ok()?;
        if answer.permissions.len() > 128 {
            return None;
        }
        let mut catalogue = Catalogue::default();
        for (i, entry) in answer.permissions.into_iter().enumerate() {
            let cloud = entry.cloud.as_deref().map(Cloud::parse);
            let bit = 1u128 << i;
            match cloud {
                None => {
                    catalogue.employee |= bit;
                    catalogue.customer |= bit;
                }
                Some(Some(Cloud::Employee)) => catalogue.employee |= bit,
                Some(Some(Cloud::Customer)) => catalogue.customer |= bit,
                Some(None) => return None,
            }
            catalogue.names.push(entry.name);
        }
        Some(catalogue)
    }

    fn all(&self) -> u128 {
        self.employee | self.customer
    }

    /// The set of `names`; `None` when one is not in this catalogue.
    fn set_of<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Option<u128> {
        names.into_iter().try_fold(0u128, |set, name| Some(set | 1u128 << self.names.iter().position(|n| n == name)?))
    }

    fn names_of(&self, set: u128) -> Vec<String> {
        self.names.iter().enumerate().filter(|(i, _)| set & 1u128 << i != 0).map(|(_, n)| n.clone()).collect()
    }

    /// What a cached key is decided with: its clouds, networks and
    /// permissions, read once. `None` when the key holds a permission this
    /// catalogue does not know (it is not cached).
    pub(crate) fn rules_of(&self, key: &VerifiedKey) -> Option<Rules> {
        let permissions = match &key.permissions {
            None => self.all(),
            Some(names) => self.set_of(names)?,
        };
        let networks = key.allowed_ips.iter().map(|n| Network::parse(n)).collect::<Option<Vec<_>>>()?;
        Some(Rules { clouds: key.clouds.clone(), networks, permissions })
    }

    /// Decides `request` from `ip` for a key with `rules`, as Latchkey
    /// would: `None` when the request names a permission this catalogue
    /// does not know (Latchkey decides it).
    pub(crate) fn decide(
        &self,
        rules: &Rules,
        request: &RequestContext,
        ip: Option<IpAddr>,
    ) -> Option<Result<(), Refusal>> {
        if let Some(cloud) = request.cloud
            && !rules.clouds.contains(&cloud)
        {
            return Some(Err(Refusal::code(RefusalCode::CloudNotAllowed)));
        }
        if !rules.networks.is_empty() {
            let allowed = ip.is_some_and(|ip| rules.networks.iter().any(|n| n.contains(ip)));
            if !allowed {
                return Some(Err(Refusal::code(RefusalCode::IpNotAllowed)));
            }
        }
        let asked = self.set_of(&request.permissions)?;
        // A permission of one cloud is never granted in the other.
        let granted = match request.cloud {
            Some(Cloud::Employee) => rules.permissions & self.employee,
            Some(Cloud::Customer) => rules.permissions & self.customer,
            None => rules.permissions,
        };
        if asked & !granted != 0 {
            let missing = self.names_of(asked & !granted);
            return Some(Err(Refusal { missing, ..Refusal::code(RefusalCode::InsufficientPermissions) }));
        }
        Some(Ok(()))
    }
}

/// A cached key's restrictions, ready to decide requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    clouds: Vec<Cloud>,
    networks: Vec<Network>,
    permissions: u128,
}

/// An allowed network: an address, or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Reads `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`.
    fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = canonical(address.parse().ok()?);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Network { address, prefix })
    }

    /// Whether `ip` is in it (an IPv4-mapped IPv6 address is the IPv4 address it maps).
    fn contains(&self, ip: IpAddr) -> bool {
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

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        Catalogue::from_json(
            br#"{"permissions":[{"name":"users:read","cloud":null},{"name":"users:write","cloud":null},
            {"name":"academies:read","cloud":"CUSTOMER"}]}"#,
        )
        .expect("a catalogue")
    }

    fn key(permissions: Option<&[&str]>, clouds: &[Cloud], ips: &[&str]) -> VerifiedKey {
        VerifiedKey {
            key_id: uuid::Uuid::nil(),
            tenant_id: uuid::Uuid::nil(),
            owner_id: uuid::Uuid::nil(),
            clouds: clouds.to_vec(),
            permissions: permissions.map(|p| p.iter().map(|s| s.to_string()).collect()),
            allowed_ips: ips.iter().map(|s| s.to_string()).collect(),
            valid_until: None,
            credits: None,
            limits: Vec::new(),
        }
    }

    fn decide(c: &Catalogue, rules: &Rules, request: &RequestContext) -> Option<Result<(), Refusal>> {
        c.decide(rules, request, request.ip)
    }

    fn code(result: Option<Result<(), Refusal>>) -> Option<Result<(), (String, Vec<String>)>> {
        result.map(|r| r.map_err(|e| (e.code.as_str().to_owned(), e.missing)))
    }

    #[test]
    fn cloud_then_address_then_permissions_in_catalogue_order() {
        let c = catalogue();
        let rules = c.rules_of(&key(Some(&["users:read"]), &[Cloud::Employee], &["10.0.0.0/8"])).expect("rules");
        let base = RequestContext::new().cloud(Cloud::Employee).ip("10.1.2.3".parse().expect("ip"));
        assert_eq!(code(decide(&c, &rules, &base.clone().permissions(["users:read"]))), Some(Ok(())));
        let wrong_cloud = base.clone().cloud(Cloud::Customer).ip("192.0.2.1".parse().expect("ip"));
        assert_eq!(
            code(decide(&c, &rules, &wrong_cloud)).map(|r| r.err().map(|e| e.0)),
            Some(Some("CLOUD_NOT_ALLOWED".into()))
        );
        let outside = base.clone().ip("::ffff:192.0.2.1".parse().expect("ip"));
        assert_eq!(
            code(decide(&c, &rules, &outside)).map(|r| r.err().map(|e| e.0)),
            Some(Some("IP_NOT_ALLOWED".into()))
        );
        let inside_mapped = base.clone().ip("::ffff:10.9.9.9".parse().expect("ip"));
        assert_eq!(code(decide(&c, &rules, &inside_mapped)), Some(Ok(())));
        let more = base.clone().permissions(["users:write", "users:read", "users:write"]);
        assert_eq!(
            code(decide(&c, &rules, &more)),
            Some(Err(("INSUFFICIENT_PERMISSIONS".into(), vec!["users:write".into()])))
        );
        assert_eq!(
            code(decide(&c, &rules, &base.permissions(["reports:read"]))),
            None,
            "unknown here: Latchkey decides"
        );
    }

    #[test]
    fn a_permission_of_one_cloud_is_not_granted_in_the_other() {
        let c = catalogue();
        let rules = c.rules_of(&key(None, &[Cloud::Employee, Cloud::Customer], &[])).expect("rules");
        let academies = RequestContext::new().permissions(["users:write", "academies:read"]);
        assert_eq!(code(decide(&c, &rules, &academies.clone().cloud(Cloud::Customer))), Some(Ok(())));
        assert_eq!(
            code(decide(&c, &rules, &academies.clone().cloud(Cloud::Employee))),
            Some(Err(("INSUFFICIENT_PERMISSIONS".into(), vec!["academies:read".into()])))
        );
        assert_eq!(code(decide(&c, &rules, &academies)), Some(Ok(())));
    }

    #[test]
    fn networks_read_like_the_server_writes_them() {
        let v6 = Network::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::5".parse().expect("ip")));
        let all = Network::parse("0.0.0.0/0").expect("all");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("nonsense").is_none());
    }
}
