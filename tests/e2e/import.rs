//! `latchkey keys import`: keys made by other systems verify in their
//! original format, including keys made by a real djangorestframework-api-key
//! (PyPI) in a throw-away SQLite database.

use std::io::Write;
use std::process::Command;

use latchkey_tests::run_latchkey as latchkey;
use latchkey_tests::{Seeded, TestApp, TestDb, ops};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_backends!(
    imported_keys_verify_in_their_original_format,
    bad_import_lines_are_refused_and_change_nothing,
    a_reimport_never_brings_back_a_rotated_or_deleted_key,
    guesses_at_an_imported_argon2_key_share_one_budget,
    imports_keep_the_tenants_key_policy,
);

/// Imports `lines` into the seeded tenant; returns the report and all output.
fn import(app: &TestApp, s: &Seeded, lines: &[String], flags: &[&str]) -> (Value, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    let tenant = s.tenant.id.to_string();
    let path = file.path().to_str().unwrap().to_owned();
    let mut args = vec!["keys", "import", "--tenant", &tenant, &path];
    args.extend_from_slice(flags);
    let out = latchkey(&app.db, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), all)
}

/// Keys made by djangorestframework-api-key: (key, prefix, hashed_key, created, name).
fn drf_keys(count: usize) -> Option<Vec<Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/drf/make_keys.py");
    let out = Command::new("python3").arg(script).arg(count.to_string()).output();
    match out {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect())
        }
        failed => {
            let why = failed.map_or_else(|e| e.to_string(), |o| String::from_utf8_lossy(&o.stderr).into_owned());
            assert!(
                std::env::var_os("LATCHKEY_REQUIRE_DRF").is_none(),
                "djangorestframework-api-key is required (pip install djangorestframework-api-key): {why}"
            );
            eprintln!("SKIPPED the djangorestframework-api-key round trip: {why}");
            None
        }
    }
}

/// `latchkey_legacy_hashes_total` as the metrics listener at `url` reports it.
async fn legacy_hashes(http: &reqwest::Client, url: &str) -> u64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("latchkey_legacy_hashes_total ")).unwrap().trim().parse().unwrap()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn imported_keys_verify_in_their_original_format(db: TestDb) {
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let owner = s.integration.email.clone();
    let mut lines = Vec::new();
    let mut keys = Vec::new();
    // Made by djangorestframework-api-key: prefix.secret, stored as sha512$$<hex>.
    let drf = drf_keys(3);
    for k in drf.iter().flatten() {
        lines.push(json!({ "ownerEmail": owner, "description": k["name"], "createdAt": k["created"], "prefix": k["prefix"], "hash": k["hashed_key"] }).to_string());
        keys.push(k["key"].as_str().unwrap().to_owned());
    }
    // Exported as SHA-256 of the whole key, as Unkey stores them.
    for n in 0..2 {
        let key = format!("uk_{}", sha256_hex(&format!("unkey {n} {}", s.tenant.id))[..24].to_owned());
        lines.push(json!({ "ownerEmail": owner, "description": format!("Unkey {n}"), "createdAt": "2024-01-02T03:04:05Z", "hash": format!("sha256:{}", sha256_hex(&key)), "lastFour": &key[key.len() - 4..] }).to_string());
        keys.push(key);
    }
    // argon2id with a public prefix; and a plaintext secret (hashed at once).
    let argon_key = format!("acme.{}", &sha256_hex(&s.tenant.id.to_string())[..30]);
    let argon = latchkey_domain::hashing::argon2id_hash_of(&argon_key).unwrap();
    lines.push(json!({ "ownerEmail": owner, "description": "Argon", "createdAt": "2023-05-06T07:08:09Z", "hash": argon, "prefix": "acme" }).to_string());
    keys.push(argon_key);
    let plain = format!("plain_{}", &sha256_hex(&format!("plain {}", s.tenant.id))[..20]);
    lines.push(
        json!({ "ownerEmail": owner, "description": "Plain", "createdAt": "2023-05-06T07:08:09Z", "secret": plain })
            .to_string(),
    );
    keys.push(plain.clone());

    let (report, output) = import(&app, &s, &lines, &[]);
    assert_eq!(report["imported"], keys.len(), "{report}");
    assert_eq!(report["refused"], json!([]), "{report}");
    for (key, line) in keys.iter().zip(&lines) {
        assert!(!output.contains(key.as_str()), "no secret in the report or logs");
        let hash: Value = serde_json::from_str(line).unwrap();
        if let Some(hash) = hash["hash"].as_str() {
            assert!(!output.contains(&hash[hash.len().saturating_sub(20)..]), "no hash in the report or logs");
        }
    }
    // Idempotent: the same file again changes nothing.
    let (again, _) = import(&app, &s, &lines, &[]);
    assert_eq!(
        (again["imported"].clone(), again["skippedAsPresent"].as_array().unwrap().len()),
        (json!(0), keys.len())
    );

    // Each original key verifies, over REST and as a GraphQL bearer; a wrong one does not.
    for key in &keys {
        assert_eq!(app.verify(key).await["valid"], true, "{key}");
        let body = app.gql(Some(key), "{ viewer { apiKey { id lastEditedAt } } }", json!({})).await;
        assert!(body["data"]["viewer"]["apiKey"]["id"].is_string(), "a GraphQL bearer: {body}");
        assert_eq!(body["data"]["viewer"]["apiKey"]["lastEditedAt"], Value::Null, "a legacy key: {body}");
        let scim = app.http.get(format!("{}/scim/v2/Users", app.url)).bearer_auth(key).send().await.unwrap();
        assert_eq!(scim.status(), 200, "a SCIM bearer (an unrestricted key may provision)");
    }
    assert_eq!(app.verify(&format!("{plain}x")).await["code"], "INVALID");
    assert_eq!(app.verify("has space").await["code"], "MALFORMED");

    // In the table as legacy keys; rotating one makes it a Latchkey key, with an overlap.
    let body = app
        .gql(
            Some(&s.admin_token),
            "{ apiKeys(first: 100) { nodes { id description lastFour lastEditedAt } } }",
            json!({}),
        )
        .await;
    let nodes = body["data"]["apiKeys"]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), keys.len());
    assert!(nodes.iter().all(|n| n["lastEditedAt"].is_null()));
    let unkey = nodes.iter().find(|n| n["description"] == "Unkey 0").unwrap();
    assert_eq!(unkey["lastFour"], &keys[keys.len() - 4][keys[keys.len() - 4].len() - 4..]);
    let argon_row = nodes.iter().find(|n| n["description"] == "Argon").unwrap();
    assert_eq!(argon_row["lastFour"], "—", "no last four given");
    let plain_row = nodes.iter().find(|n| n["description"] == "Plain").unwrap();
    let rotated = app
        .gql(
            Some(&s.admin_token),
            ops::ROTATE_WITH,
            json!({ "input": { "id": plain_row["id"], "overlapSeconds": 3600 } }),
        )
        .await;
    let fresh = rotated["data"]["rotateApiKey"]["secret"].as_str().unwrap().to_owned();
    assert!(fresh.starts_with("lk_"));
    assert_eq!(app.verify(&fresh).await["valid"], true);
    assert_eq!(app.verify(&plain).await["valid"], true, "the imported secret works during the overlap");
    app.gql(Some(&s.admin_token), ops::EXPIRE_PREVIOUS, json!({ "id": plain_row["id"] })).await;
    assert_eq!(app.verify(&plain).await["code"], "EXPIRED");
    app.stop().await;
}

async fn bad_import_lines_are_refused_and_change_nothing(db: TestDb) {
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let other = app.seed("Other").await;
    let good = |n: usize| {
        json!({ "ownerEmail": s.integration.email, "description": format!("Good {n}"), "createdAt": "2024-01-01T00:00:00Z", "hash": format!("sha256:{}", sha256_hex(&format!("good key {n} {}", s.tenant.id))) }).to_string()
    };
    let hash = format!("sha256:{}", sha256_hex("x"));
    let lines = vec![
        good(1),
        "{ not json".to_owned(),
        json!({ "ownerEmail": s.integration.email, "description": "d", "createdAt": "2024-01-01T00:00:00Z", "hash": "md5:abcdef" }).to_string(),
        json!({ "ownerEmail": other.integration.email, "description": "d", "createdAt": "2024-01-01T00:00:00Z", "hash": hash }).to_string(),
        good(1),
        "x".repeat(10 * 1024 * 1024),
        json!({ "ownerEmail": s.integration.email, "description": "d", "createdAt": "2024-01-01T00:00:00Z", "hash": hash, "secret": "abcdefghij" }).to_string(),
        json!({ "ownerEmail": s.integration.email, "description": "d", "createdAt": "2024-01-01T00:00:00Z", "hash": latchkey_domain::hashing::argon2id_hash_of("a.bcdefghij").unwrap() }).to_string(),
        json!({ "ownerEmail": s.integration.email, "description": "d", "createdAt": "2999-01-01T00:00:00Z", "hash": hash }).to_string(),
        json!({ "ownerEmail": s.academy_admin.email, "description": "d", "createdAt": "2024-01-01T00:00:00Z", "hash": hash }).to_string(),
        json!({ "ownerEmail": s.integration.email, "description": "\u{200b}", "createdAt": "2024-01-01T00:00:00Z", "hash": hash }).to_string(),
    ];
    let count = || async {
        app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await["data"]["apiKeys"]["totalCount"]
            .clone()
    };

    // --atomic and --dry-run write nothing.
    let (report, _) = import(&app, &s, &lines, &["--atomic"]);
    assert_eq!(report["written"], false);
    assert_eq!(count().await, 0);
    let (report, _) = import(&app, &s, &lines[..1], &["--dry-run"]);
    assert_eq!((report["written"].clone(), report["dryRun"].clone()), (json!(false), json!(true)));
    assert_eq!(count().await, 0);

    // Otherwise each bad line is refused with its number and reason; the good one goes in.
    let (report, output) = import(&app, &s, &lines, &[]);
    assert_eq!(report["imported"], 1, "{report}");
    let refused: Vec<(u64, String)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    let lines_refused: Vec<u64> = refused.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines_refused, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "{report}");
    for (line, needle) in [
        (2, "not a valid record"),
        (3, "unknown hash algorithm"),
        (4, "no user"),
        (5, "earlier in the file"),
        (6, "longer than"),
        (7, "not both"),
        (8, "prefix"),
        (9, "future"),
        (10, "cannot own keys"),
        (11, "description"),
    ] {
        let reason = &refused.iter().find(|(l, _)| *l == line).unwrap().1;
        assert!(reason.contains(needle), "line {line}: {reason}");
    }
    assert!(!output.contains(&hash[7..]), "no hash is echoed");
    assert_eq!(count().await, 1);
    app.stop().await;
}

fn plain_line(s: &Seeded, description: &str, secret: &str) -> String {
    json!({ "ownerEmail": s.integration.email, "description": description, "createdAt": "2024-01-01T00:00:00Z", "secret": secret }).to_string()
}

async fn a_reimport_never_brings_back_a_rotated_or_deleted_key(db: TestDb) {
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let (kept, rotated, deleted) = ("kept_1234567890abcdef", "rotated_1234567890abcdef", "deleted_1234567890abcdef");
    // A key refused a moment before it is imported verifies as soon as it is.
    assert_eq!(app.verify(kept).await["code"], "INVALID");
    let lines =
        vec![plain_line(&s, "Kept", kept), plain_line(&s, "Rotated", rotated), plain_line(&s, "Deleted", deleted)];
    let (report, _) = import(&app, &s, &lines, &[]);
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(app.verify(kept).await["valid"], true, "not held back by the failure a moment ago");
    let ids: Vec<String> =
        report["importedKeys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect();

    // Each import is audited (by Latchkey) and its owner mailed like a generate.
    let events = app.wait_for_deliveries(3).await;
    let imported: Vec<_> = events.iter().filter(|e| e.kind == latchkey_domain::NoticeKind::Imported).collect();
    assert_eq!(imported.len(), 3, "{events:?}");
    assert!(imported.iter().all(|e| e.owner_email == s.integration.email && e.actor_name == "Latchkey"));
    let trail = app
        .gql(
            Some(&s.admin_token),
            "query($k: ID!) { apiKeyEvents(keyId: $k, first: 10) { nodes { action actorName } } }",
            json!({ "k": ids[0] }),
        )
        .await;
    assert_eq!(
        trail["data"]["apiKeyEvents"]["nodes"],
        json!([{ "action": "IMPORTED", "actorName": "Latchkey" }]),
        "{trail}"
    );

    let fresh = app.rotate(&s.admin_token, &ids[1]).await;
    app.delete(&s.admin_token, &ids[2]).await;
    assert_eq!(app.verify(rotated).await["code"], "INVALID");
    assert_eq!(app.verify(deleted).await["code"], "INVALID");

    // The same file again: the kept key is present, the other two never come back.
    let (again, _) = import(&app, &s, &lines, &[]);
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["skippedAsPresent"], json!([1]), "{again}");
    assert_eq!(again["skippedAsRetired"], json!([2, 3]), "{again}");
    assert_eq!(app.verify(rotated).await["code"], "INVALID");
    assert_eq!(app.verify(deleted).await["code"], "INVALID");
    assert_eq!(app.verify(&fresh).await["valid"], true);
    let count = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["apiKeys"]["totalCount"], 2, "{count}");
    app.stop().await;
}

async fn guesses_at_an_imported_argon2_key_share_one_budget(db: TestDb) {
    let app = TestApp::start_with(db, latchkey_tests::AppOptions { metrics: true, ..Default::default() }).await;
    let metrics = format!("http://{}/metrics", app.server.as_ref().unwrap().metrics_addr.unwrap());
    let s = app.seed("Acme").await;
    let key = format!("acme.{}", &sha256_hex(&s.tenant.id.to_string())[..30]);
    let other = format!("beta.{}", &sha256_hex(&s.admin.id.to_string())[..30]);
    let line = |prefix: &str, hash: String| {
        json!({ "ownerEmail": s.integration.email, "description": prefix, "createdAt": "2024-01-01T00:00:00Z", "hash": hash, "prefix": prefix }).to_string()
    };
    // Parameters above the ceiling are refused per line, dry run or not.
    let costly = |params: &str| {
        format!("$argon2id$v=19${params}$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg")
    };
    let lines = vec![
        line("acme", latchkey_domain::hashing::argon2id_hash_of(&key).unwrap()),
        line("beta", latchkey_domain::hashing::argon2id_hash_of(&other).unwrap()),
        line("huge", costly("m=2097152,t=64,p=16")),
        line("slow", costly("m=524288,t=2,p=1")),
    ];
    for flags in [&["--dry-run"][..], &[]] {
        let (report, _) = import(&app, &s, &lines, flags);
        let reasons: Vec<&str> =
            report["refused"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons.len(), 2, "{report}");
        assert!(reasons.iter().all(|r| r.contains("at most 102400 KiB")), "{reasons:?}");
    }

    let hashes = || legacy_hashes(&app.http, &metrics);
    // 40 guesses at the known prefix, each different: one budget of 10 hashes.
    let mut codes = Vec::new();
    for n in 0..40 {
        codes.push(app.verify(&format!("acme.guess{n:026}")).await["code"].as_str().unwrap().to_owned());
    }
    let hashed = hashes().await;
    assert!(hashed <= 10, "{hashed} hashes for 40 guesses: {codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "INVALID").count(), 10, "{codes:?}");
    assert!(codes[10..].iter().all(|c| c == "RATE_LIMITED"), "{codes:?}");
    // Another imported key is not held back, and costs one hash.
    assert_eq!(app.verify(&other).await["valid"], true);
    assert_eq!(hashes().await, hashed + 1);

    // The budget is each replica's own (limits are in memory): with N
    // replicas a key's guesses cost at most N × 10 hashes a minute.
    let (replica, _) = app.replica().await;
    let replica_metrics = format!("http://{}/metrics", replica.metrics_addr.unwrap());
    let replica_hashes = || legacy_hashes(&app.http, &replica_metrics);
    let mut codes = Vec::new();
    for n in 40..60 {
        let answer = app.verify_on(&format!("http://{}", replica.addr), &format!("acme.guess{n:026}")).await;
        codes.push(answer["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes.iter().filter(|c| *c == "INVALID").count(), 10, "a fresh budget on the second replica: {codes:?}");
    assert!(replica_hashes().await <= 10, "at most 10 hashes on the second replica");
    assert_eq!(hashes().await, hashed + 1, "the first replica hashed nothing more");
    replica.stop().await;
    app.stop().await;
}

async fn imports_keep_the_tenants_key_policy(db: TestDb) {
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let set = "mutation($input: UpdateTenantKeyPolicyInput!) { updateTenantKeyPolicy(input: $input) { userErrors { code } } }";
    let policy =
        json!({ "maxLifetimeDays": 30, "requireExpiry": true, "requireRestrictions": false, "maxKeysPerOwner": 2 });
    let body = app.gql(Some(&s.admin_token), set, json!({ "input": policy })).await;
    assert_eq!(body["data"]["updateTenantKeyPolicy"]["userErrors"], json!([]), "{body}");
    let soon = (chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let late = (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339();
    let line = |n: usize, expires: Option<&str>| {
        let mut record = json!({ "ownerEmail": s.integration.email, "description": format!("Imported {n}"),
            "createdAt": "2024-01-01T00:00:00Z", "hash": format!("sha256:{}", sha256_hex(&format!("policy key {n}"))) });
        if let Some(at) = expires {
            record["expiresAt"] = json!(at);
        }
        record.to_string()
    };
    let lines = [line(1, None), line(2, Some(&late)), line(3, Some(&soon)), line(4, Some(&soon)), line(5, Some(&soon))];
    let (report, _) = import(&app, &s, &lines, &[]);
    assert_eq!(report["imported"], 2, "{report}");
    let refused: Vec<(u64, &str, &str, &str)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{r}"));
            (r["line"].as_u64().unwrap(), text("code"), text("field"), text("reason"))
        })
        .collect();
    let summary: Vec<(u64, &str, &str)> = refused.iter().map(|(l, c, f, _)| (*l, *c, *f)).collect();
    assert_eq!(
        summary,
        [(1, "POLICY", "expiresAt"), (2, "POLICY", "expiresAt"), (5, "POLICY", "ownerEmail")],
        "{report}"
    );
    assert!(refused[1].3.contains("30 days") && refused[2].3.contains("at most 2 keys"), "{refused:?}");
    let count = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["apiKeys"]["totalCount"], 2);
    app.stop().await;
}
