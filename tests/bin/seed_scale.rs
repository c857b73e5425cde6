//! Seeds a migrated PostgreSQL database for `scripts/bench-scale.sh`: one
//! tenant with many keys (10 million by default) and many tenants with a
//! thousand keys each, written with `COPY`, not through GraphQL. Keys are
//! real: each secret is derived from its number (so the benchmark can
//! present any of them without storing eleven million secrets), checksummed
//! and stored as SHA-256 like a generated key.
//!
//! ```text
//! latchkey-seed-scale URL [--big-tenant-keys N] [--tenants N] [--keys-per-tenant N]
//!                         [--secrets FILE --secrets-count N] [--keys-present]
//! ```
//!
//! `--keys-present` finishes a seeding whose keys were all written (the
//! window of recent usage, statistics, secrets, the JSON) without writing
//! them again.
//!
//! Prints one JSON object: the big tenant's id, an internal admin of it and
//! how many keys were written. `--secrets` writes the secrets of
//! `--secrets-count` keys of the big tenant, spread evenly over it, one a
//! line, in an order that visits the table at random.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use latchkey_domain::{Role, TenantId, UserId};
use latchkey_store::{NewUser, Store, StoreOptions};
use sea_orm::sqlx::{Connection as _, PgConnection};
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Descriptions are one of these and a number, so a search finds a share.
const PURPOSES: [&str; 8] =
    ["Payroll sync", "HR import", "Course catalogue", "Reporting", "SCIM bridge", "LMS connector", "Badges", "BI"];
/// Rows sent to `COPY` per message.
const CHUNK_ROWS: u64 = 20_000;

struct Args {
    url: String,
    big_tenant_keys: u64,
    tenants: u64,
    keys_per_tenant: u64,
    secrets: Option<String>,
    secrets_count: u64,
    keys_present: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut raw = std::env::args().skip(1);
    let url = raw.next().ok_or_else(|| anyhow::anyhow!("usage: latchkey-seed-scale URL [options]"))?;
    let mut args = Args {
        url,
        big_tenant_keys: 10_000_000,
        tenants: 1_000,
        keys_per_tenant: 1_000,
        secrets: None,
        secrets_count: 0,
        keys_present: false,
    };
    while let Some(flag) = raw.next() {
        if flag == "--keys-present" {
            args.keys_present = true;
            continue;
        }
        let value = raw.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| anyhow::anyhow!("{flag}: {e}"));
        match flag.as_str() {
            "--big-tenant-keys" => args.big_tenant_keys = number()?,
            "--tenants" => args.tenants = number()?,
            "--keys-per-tenant" => args.keys_per_tenant = number()?,
            "--secrets-count" => args.secrets_count = number()?,
            "--secrets" => args.secrets = Some(value),
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(args)
}

/// The secret of key number `n` of a tenant numbered `tenant`: `lk_`, 46
/// base62 characters drawn from SHA-256 of the numbers, and the checksum.
fn secret_of(tenant: u64, n: u64) -> String {
    let mut body = String::with_capacity(55);
    body.push_str("lk_");
    let mut round = 0u32;
    while body.len() < 3 + 46 {
        let digest = Sha256::new()
            .chain_update(b"latchkey-seed-scale")
            .chain_update(tenant.to_le_bytes())
            .chain_update(n.to_le_bytes())
            .chain_update(round.to_le_bytes())
            .finalize();
        for byte in digest {
            if byte < 248 && body.len() < 3 + 46 {
                body.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
        round += 1;
    }
    latchkey_domain::secret::with_checksum(&body)
}

/// A time-ordered id (UUIDv7) for a key made at `at`, unique by `tenant` and `n`.
fn key_id(at: DateTime<Utc>, tenant: u64, n: u64) -> uuid::Uuid {
    // The version and variant bits overwrite parts of bytes 0 and 2: the
    // numbers go where nothing is overwritten.
    let mut random = [0u8; 10];
    random[3..5].copy_from_slice(&(tenant as u16).to_le_bytes());
    random[5..9].copy_from_slice(&(n as u32).to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64, &random).into_uuid()
}

/// A deterministic spread of `n` over `0..modulo` (splitmix64 of `n` and `salt`).
fn spread(n: u64, salt: u64, modulo: u64) -> u64 {
    let mut x = n ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % modulo.max(1)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// One tenant's owners and admin.
struct Owners {
    tenant: TenantId,
    admin: UserId,
    integrations: Vec<UserId>,
}

async fn make_tenant(store: &Store, name: &str, integrations: u64, now: DateTime<Utc>) -> anyhow::Result<Owners> {
    let tenant = store.create_tenant(name, now).await?;
    let slug = name.to_lowercase().replace(' ', "-");
    let user = |local: String, display: String, role| NewUser {
        tenant_id: tenant.id,
        email: format!("{local}@{slug}.example"),
        name: display,
        role,
    };
    let admin = store.create_user(user("admin".into(), format!("Admin of {name}"), Role::InternalAdmin), now).await?;
    let mut owners = Vec::new();
    for i in 0..integrations {
        let bot = user(format!("bot{i}"), format!("Integration {i}"), Role::IntegrationUser);
        owners.push(store.create_user(bot, now).await?.id);
    }
    Ok(Owners { tenant: tenant.id, admin: admin.id, integrations: owners })
}

/// Writes `count` keys of `owners`'s tenant (number `tenant`) with `COPY`,
/// created over the two years before `now`, oldest first.
async fn copy_keys(
    conn: &mut PgConnection,
    owners: &Owners,
    tenant: u64,
    count: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let columns = "id, tenant_id, owner_id, description, description_folded, lookup_id, credential_hash, \
                   credential_version, last_four, created_at, created_by, last_used_at, expires_at";
    let span = Duration::days(730).num_milliseconds();
    let recent = latchkey_domain::usage::UsageRange::recent(now).from;
    let mut start = 0;
    while start < count {
        let end = (start + CHUNK_ROWS).min(count);
        let mut rows = String::with_capacity(((end - start) * 320) as usize);
        let mut usage = String::new();
        for n in start..end {
            let created = now - Duration::milliseconds(span - (span as u64 * n / count.max(1)) as i64);
            let secret = secret_of(tenant, n);
            let description = format!("{} {n}", PURPOSES[(n % PURPOSES.len() as u64) as usize]);
            let owner = owners.integrations[(n % owners.integrations.len() as u64) as usize];
            // Six keys in ten have been used, three in ten expire.
            let used = (spread(n, 1, 10) < 6)
                .then(|| Ord::min(now, created + Duration::seconds(spread(n, 2, 86_400 * 30) as i64)));
            let id = key_id(created, tenant, n);
            if let Some(used) = used.filter(|used| *used >= recent) {
                let day = latchkey_domain::usage::Granularity::Day.bucket_of(used);
                let verifications = 1 + spread(n, 5, 1_000);
                writeln!(usage, "{id}\t{}\t86400\t{}\tVALID\t{verifications}", owners.tenant, timestamp(day))?;
            }
            let expires = (spread(n, 3, 10) < 3).then(|| now + Duration::days(1 + spread(n, 4, 365) as i64));
            let optional = |at: Option<DateTime<Utc>>| at.map_or_else(|| "\\N".to_owned(), timestamp);
            writeln!(
                rows,
                "{id}\t{}\t{}\t{description}\t{}\t{}\t{}\t1\t{}\t{}\t{}\t{}\t{}",
                owners.tenant,
                owner,
                description.to_lowercase(),
                &secret[3..15],
                latchkey_domain::hashing::sha256_stored(&secret),
                &secret[secret.len() - 4..],
                timestamp(created),
                owners.admin,
                optional(used),
                optional(expires),
            )?;
        }
        let mut copy = conn.copy_in_raw(&format!("COPY api_keys ({columns}) FROM STDIN")).await?;
        copy.send(rows.into_bytes()).await?;
        copy.finish().await?;
        if !usage.is_empty() {
            let columns = "key_id, tenant_id, bucket_seconds, period_start, outcome, count";
            let mut copy = conn.copy_in_raw(&format!("COPY key_usage ({columns}) FROM STDIN")).await?;
            copy.send(usage.into_bytes()).await?;
            copy.finish().await?;
        }
        start = end;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    #[allow(clippy::disallowed_methods)] // a seeding tool: the data is as of the wall clock
    let now = Utc::now();
    let started = Instant::now();
    let store = Store::connect(&args.url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let mut conn = PgConnection::connect(&args.url).await?;

    let big = if args.keys_present {
        let (tenant, admin): (uuid::Uuid, uuid::Uuid) = sea_orm::sqlx::query_as(
            "SELECT t.id, u.id FROM tenants t JOIN users u ON u.tenant_id = t.id \
             WHERE t.name = 'Scale' AND u.email = 'admin@scale.example'",
        )
        .fetch_one(&mut conn)
        .await?;
        Owners { tenant: TenantId(tenant), admin: UserId(admin), integrations: Vec::new() }
    } else {
        let big = make_tenant(&store, "Scale", 1_000, now).await?;
        copy_keys(&mut conn, &big, 0, args.big_tenant_keys, now).await?;
        eprintln!("{} keys of the big tenant in {:.0?}", args.big_tenant_keys, started.elapsed());
        for t in 1..=args.tenants {
            let owners = make_tenant(&store, &format!("Tenant {t}"), 9, now).await?;
            copy_keys(&mut conn, &owners, t, args.keys_per_tenant, now).await?;
        }
        eprintln!("{} tenants of {} keys, {:.0?} in all", args.tenants, args.keys_per_tenant, started.elapsed());
        big
    };
    // What a replica's first flush does on a database without a usage window: sum every key's recent days.
    let summing = Instant::now();
    store.advance_usage_window(latchkey_domain::usage::UsageRange::recent(now).from).await?;
    eprintln!("usage window summed for every key in {:.0?}", summing.elapsed());
    sea_orm::sqlx::query("VACUUM ANALYZE api_keys, key_usage").execute(&mut conn).await?;

    if let Some(path) = &args.secrets {
        let count = args.secrets_count.min(args.big_tenant_keys).max(1);
        let step = args.big_tenant_keys / count;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        // A stride coprime to the count visits every chosen key once, out of order.
        let stride = (count / 2..count).find(|s| gcd(*s, count) == 1).unwrap_or(1);
        for i in 0..count {
            writeln!(out, "{}", secret_of(0, (i * stride % count) * step))?;
        }
        out.flush()?;
    }
    let written = args.big_tenant_keys + args.tenants * args.keys_per_tenant;
    println!(
        "{}",
        serde_json::json!({ "tenant": big.tenant.to_string(), "admin": big.admin.to_string(), "keys": written })
    );
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
