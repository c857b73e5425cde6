//! The `latchkey` command line, run as a real process.

use std::process::{Command, Output};

use latchkey_tests::run_latchkey as latchkey;
use latchkey_tests::{Backend, JWT_SECRET, TestApp, TestDb, latchkey_bin};
use serde_json::{Value, json};

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "latchkey failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn operator_commands_bootstrap_a_tenant(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let migrated = json_out(&latchkey(&db, &["migrate"]));
    assert_eq!(migrated, json!({ "migrated": true }));
    json_out(&latchkey(&db, &["migrate"]));

    let tenant = json_out(&latchkey(&db, &["tenant", "create", "--name", "Acme Corp"]));
    assert_eq!(tenant["name"], "Acme Corp");
    let tenant_id = tenant["id"].as_str().unwrap();
    // How the identity provider names it: set, unique among tenants, cleared.
    let named = json_out(&latchkey(&db, &["tenant", "update", "--tenant", tenant_id, "--external-id", "acme-dir"]));
    assert_eq!(named, json!({ "id": tenant_id, "name": "Acme Corp", "externalId": "acme-dir" }));
    let other = json_out(&latchkey(&db, &["tenant", "create", "--name", "Globex"]));
    let other_id = other["id"].as_str().unwrap();
    let taken = latchkey(&db, &["tenant", "update", "--tenant", other_id, "--external-id", "acme-dir"]);
    assert!(!taken.status.success());
    assert!(stderr(&taken).contains("another tenant already has the external id"), "{}", stderr(&taken));
    let unknown =
        latchkey(&db, &["tenant", "update", "--tenant", "0190c3a0-0000-7000-8000-000000000000", "--external-id", "x"]);
    assert!(stderr(&unknown).contains("no tenant with id"), "{}", stderr(&unknown));
    let cleared = json_out(&latchkey(&db, &["tenant", "update", "--tenant", tenant_id, "--external-id", ""]));
    assert_eq!(cleared["externalId"], Value::Null);
    json_out(&latchkey(&db, &["tenant", "update", "--tenant", other_id, "--external-id", "acme-dir"]));
    let user = json_out(&latchkey(
        &db,
        &[
            "user",
            "create",
            "--tenant",
            tenant_id,
            "--email",
            "Ada@Acme.example",
            "--name",
            "Ada",
            "--role",
            "internal-admin",
        ],
    ));
    assert_eq!(user["email"], "ada@acme.example");
    assert_eq!(user["role"], "internal-admin");
    assert_eq!(user["tenantId"], tenant_id);
    let user_id = user["id"].as_str().unwrap();
    let bot = json_out(&latchkey(
        &db,
        &[
            "user",
            "create",
            "--tenant",
            tenant_id,
            "--email",
            "bot@acme.example",
            "--name",
            "Bot",
            "--role",
            "integration-user",
        ],
    ));

    let out = latchkey(&db, &["token", "--user", user_id, "--ttl-secs", "600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.lines().count(), 1);

    // The token works against a server on the same database.
    let mut app = TestApp::start_on(db).await;
    let body = app.gql(Some(token), "{ viewer { user { id role } clouds } }", json!({})).await;
    assert_eq!(body["data"]["viewer"]["user"]["id"], user_id, "{body}");
    assert_eq!(body["data"]["viewer"]["clouds"], json!(["EMPLOYEE"]));
    let owner: latchkey_domain::User =
        app.store.user_in_any_tenant(bot["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    app.generate(token, &owner, "Made with a CLI token").await;

    // Operators list the keys that expire soon, across tenants, as JSON.
    let in_three_days = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let input = json!({ "input": { "ownerId": owner.id, "description": "Expires soon", "expiresAt": in_three_days } });
    let body = app.gql(Some(token), latchkey_tests::ops::GENERATE, input).await;
    let expiring_id = body["data"]["generateApiKey"]["apiKey"]["id"].clone();
    let out = latchkey(&app.db, &["keys", "expiring", "--within-days", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], expiring_id);
    assert_eq!(listed[0]["description"], "Expires soon");
    assert_eq!(listed[0]["status"], "active");
    assert!(listed[0]["expiresAt"].is_string());
    let out = latchkey(&app.db, &["keys", "expiring", "--within-days", "2"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));

    // A customer-cloud token is valid but may not manage keys.
    let out = latchkey(&app.db, &["token", "--user", user_id, "--cloud", "customer"]);
    let customer = String::from_utf8(out.stdout).unwrap();
    let body = app.gql(Some(customer.trim()), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(latchkey_tests::error_code(&body), "FORBIDDEN");

    // A token minted for another audience (same secret) is refused by this server.
    let out = latchkey(&app.db, &["token", "--user", user_id, "--jwt-audience", "billing"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = app.gql(Some(String::from_utf8(out.stdout).unwrap().trim()), "{ viewer { clouds } }", json!({})).await;
    assert_eq!(latchkey_tests::error_code(&body), "UNAUTHENTICATED", "{body}");

    // Refusals: clear message, non-zero exit, nothing printed on stdout. The
    // server is stopped first: on SQLite, a CLI write beside the running server
    // was refused "database is locked" in CI (never here); see the note of #16.
    if let Some(server) = app.server.take() {
        server.stop().await;
    }
    let unknown_tenant = uuid::Uuid::now_v7().to_string();
    for (args, message) in [
        (create_user("nope", "a@b.c", "A", "internal-admin"), "--tenant"),
        (create_user(&unknown_tenant, "a@b.c", "A", "internal-admin"), "no tenant"),
        (create_user(tenant_id, "ada@acme.example", "A", "internal-admin"), "already exists"),
        (create_user(tenant_id, "not-an-email", "A", "internal-admin"), "--email"),
        (create_user(tenant_id, "a@b.c", "A", "superuser"), "superuser"),
        (create_user(tenant_id, "z@b.c", "\u{3164}", "internal-admin"), "invisible"),
        (vec!["tenant", "create", "--name", "  "], "--name"),
        (vec!["tenant", "create", "--name", "\u{200b}\u{200f}"], "invisible"),
        (vec!["token", "--user", &unknown_tenant], "no user"),
        (vec!["token", "--user", user_id, "--ttl-secs", "0"], "--ttl-secs"),
        (vec!["token", "--user", user_id, "--ttl-secs", "86401"], "at most 86400"),
        (vec!["token", "--user", user_id, "--jwt-issuer", " "], "LATCHKEY_JWT_ISSUER"),
        (vec!["keys", "expiring", "--within-days", "400"], "--within-days"),
        (vec!["keys", "expiring", "--within-days", "soon"], "--within-days"),
    ] {
        let out = latchkey(&app.db, &args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    app.stop().await;
}

#[tokio::test]
async fn operator_commands_bootstrap_a_tenant_sqlite() {
    operator_commands_bootstrap_a_tenant(Backend::Sqlite).await;
}

#[tokio::test]
async fn operator_commands_bootstrap_a_tenant_postgres() {
    operator_commands_bootstrap_a_tenant(Backend::Postgres).await;
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_usable_configuration() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(latchkey_bin());
        cmd.arg("serve")
            .env("LATCHKEY_DATABASE_URL", &db.url)
            .env_remove("LATCHKEY_JWT_SECRET")
            .env("LATCHKEY_BIND", "127.0.0.1:0");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("LATCHKEY_JWT_SECRET is required"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", "short")]);
    assert!(stderr(&out).contains("at least 32 bytes"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", JWT_SECRET), ("LATCHKEY_BIND", "not an address")]);
    assert!(stderr(&out).contains("LATCHKEY_BIND is invalid"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", JWT_SECRET), ("LATCHKEY_DATABASE_URL", "mysql://nope")]);
    assert!(stderr(&out).contains("LATCHKEY_DATABASE_URL is invalid"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", JWT_SECRET), ("LATCHKEY_CONSOLE_URL", "console")]);
    assert!(stderr(&out).contains("LATCHKEY_CONSOLE_URL is invalid"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", JWT_SECRET), ("LATCHKEY_BODY_READ_TIMEOUT_SECS", "0")]);
    assert!(stderr(&out).contains("LATCHKEY_BODY_READ_TIMEOUT_SECS"), "{}", stderr(&out));
    let out = run(&[("LATCHKEY_JWT_SECRET", JWT_SECRET), ("LATCHKEY_JWT_AUDIENCE", "")]);
    assert!(stderr(&out).contains("LATCHKEY_JWT_AUDIENCE"), "{}", stderr(&out));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_hold_no_secret() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let env = [
        ("LATCHKEY_DATABASE_URL", db.url.as_str()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET),
        ("LATCHKEY_LOG_FORMAT", "json"),
    ];
    let server = latchkey_tests::process::ServerProcess::spawn(&env);
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/healthz", server.url)).send().await.unwrap().status(), 200);
    let bearer = "lk_NotARealKeyNotARealKeyNotARealKeyNotARealKeyNotAReal";
    http.post(format!("{}/graphql", server.url))
        .bearer_auth(bearer)
        .json(&json!({ "query": "{ viewer { clouds } }" }))
        .send()
        .await
        .unwrap();
    let mut request_lines = Vec::new();
    for _ in 0..100 {
        let log = server.log();
        request_lines = log.lines().filter(|l| l.contains("\"message\":\"request\"")).map(str::to_owned).collect();
        if request_lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = server.log();
    for line in log.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["timestamp"].is_string(), "{line}");
    }
    let healthz: Value = request_lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["path"] == "/healthz")
        .expect("the request line");
    assert_eq!((healthz["method"].clone(), healthz["status"].clone()), (json!("GET"), json!(200)));
    assert!(healthz["micros"].is_u64());
    assert!(!log.contains(bearer) && !log.contains(JWT_SECRET), "no secret or token in the logs");
    server.terminate();
    // An unknown format is refused.
    let out =
        std::process::Command::new(latchkey_bin()).args(["schema"]).env("LATCHKEY_LOG_FORMAT", "xml").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LATCHKEY_LOG_FORMAT"));
}

/// The arguments of `latchkey user create`.
fn create_user<'a>(tenant: &'a str, email: &'a str, name: &'a str, role: &'a str) -> Vec<&'a str> {
    vec!["user", "create", "--tenant", tenant, "--email", email, "--name", name, "--role", role]
}
