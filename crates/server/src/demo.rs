//! `latchkey demo`: a fresh embedded database with a demo tenant, then serve.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine;
use clap::Args;
use latchkey_app::{App, Authentication, GenerateKey, Principal, VerifierConfig};
use latchkey_domain::admin_token::{AdminClaims, AdminTokenKey};
use latchkey_domain::hashing::legacy_argon2id_hash;
use latchkey_domain::{ApiKeySecret, Clock, Cloud, Description, Role, SystemClock, Tenant, User};
use latchkey_store::{NewCredential, NewKey, NewUser, Store, StoreOptions};
use rand::TryRng;

use crate::config::{MailOptions, ServeConfig, parse_bind, parse_jwt_secret};

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Listen address.
    #[arg(long, env = "LATCHKEY_BIND", default_value = crate::config::DEFAULT_BIND)]
    pub bind: String,
    /// Where the demo database goes (recreated on every run).
    #[arg(long, default_value = "data/demo.db")]
    pub demo_database: String,
    /// Where the demo's owner mail goes, as .eml files (emptied on every run).
    #[arg(long, default_value = "data/demo-mail")]
    pub demo_mail_dir: String,
}

fn remove_database(path: &str) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {file}")),
        }
    }
    Ok(())
}

fn random_jwt_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 48];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The demo's people.
struct Cast {
    ada: User,
    grace: User,
    sync_bot: User,
}

async fn seed(store: &Store, token_key: &AdminTokenKey) -> anyhow::Result<Cast> {
    let now = SystemClock.now();
    let tenant = store.create_tenant("Acme Learning", now).await?;
    let user =
        |email: &str, name: &str, role| NewUser { tenant_id: tenant.id, email: email.into(), name: name.into(), role };
    let ada = store.create_user(user("ada@acme.example", "Ada Lovelace", Role::InternalAdmin), now).await?;
    let grace = store.create_user(user("grace@acme.example", "Grace Hopper", Role::InternalAdmin), now).await?;
    store.create_user(user("alan@acme.example", "Alan Turing", Role::AcademyAdmin), now).await?;
    let sync_bot =
        store.create_user(user("salesforce-sync@acme.example", "Salesforce Sync", Role::IntegrationUser), now).await?;

    // A key from before key management: no creator, no last edit, and stored
    // the way keys were then (argon2id; upgraded on its first verification).
    let legacy = ApiKeySecret::generate()?;
    let credential = NewCredential::new(&legacy, legacy_argon2id_hash(&legacy)?);
    let description = Description::parse("HR export (imported from the old admin)")?;
    store
        .import_legacy_key(
            NewKey::new(tenant.id, sync_bot.id, description, credential),
            now - chrono::Duration::days(400),
        )
        .await?;

    let app = App::new(
        store.clone(),
        Arc::new(SystemClock),
        Some(token_key.clone()),
        &VerifierConfig::default(),
        Arc::new(tokio::sync::Notify::new()),
    )?;
    let auth = admin(&ada, &tenant);
    let admin = app.key_admin(&auth)?;
    let in_six_days = Some(now + chrono::Duration::days(6));
    for (owner, text, expires_at) in [
        (&sync_bot, "Salesforce sync", None),
        (&ada, "Reporting dashboard", None),
        (&grace, "Course catalogue import", in_six_days),
    ] {
        let command =
            GenerateKey { owner_id: owner.id.to_string(), description: text.into(), expires_at, ..Default::default() };
        if let Err(violations) = admin.generate(command).await? {
            anyhow::bail!("demo seed refused: {violations:?}");
        }
    }
    Ok(Cast { ada, grace, sync_bot })
}

fn admin(user: &User, tenant: &Tenant) -> Authentication {
    Authentication::Authenticated(Principal::Admin {
        user: user.clone(),
        tenant: tenant.clone(),
        cloud: Cloud::Employee,
    })
}

/// Runs the demo: recreate the database, seed, print how to connect, serve.
pub async fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bind = parse_bind(&args.bind)?;
    if let Some(dir) = std::path::Path::new(&args.demo_database).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    remove_database(&args.demo_database)?;
    match std::fs::remove_dir_all(&args.demo_mail_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot clear {}", args.demo_mail_dir)),
    }
    let database_url = format!("sqlite://{}?mode=rwc", args.demo_database);
    let store = Store::connect(&database_url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let secret = match std::env::var("LATCHKEY_JWT_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => random_jwt_secret()?,
    };
    let token_key: AdminTokenKey = parse_jwt_secret(Some(&secret))?;
    let cast = seed(&store, &token_key).await?;
    store.close().await?;
    let mail = MailOptions { directory: std::path::PathBuf::from(&args.demo_mail_dir), ..MailOptions::default() };
    let config = ServeConfig {
        shutdown_timeout: Duration::from_secs(5),
        mail,
        ..ServeConfig::new(database_url, bind, Some(token_key.clone()))
    };
    let notifier = config.notifier()?;
    let server = crate::wiring::start(config, notifier).await?;
    let now = SystemClock.now().timestamp();
    let token = token_key.sign(&AdminClaims {
        sub: cast.ada.id,
        tid: cast.ada.tenant_id,
        cloud: Cloud::Employee,
        exp: now + 12 * 3600,
        iat: now,
    });
    let url = server.url();
    writeln!(
        out,
        "Latchkey demo is running on a fresh database ({db}).\n\
         \n  API keys page (signed in as {ada}):\n    {url}/settings/integrations/api#token={token}\n\
         \n  GraphiQL (signed in as {ada}, an example query filled in; press run):\n    {url}/graphiql#token={token}\n\
         \n  GraphQL:   {url}/graphql\n\
         \nThe token (internal admin, employee cloud) is valid 12 hours; links carry it after `#`,\n\
         which browsers never send to a server. For other clients: Authorization: Bearer {token}\n\
         \nThen try, in GraphiQL:\n\
         \n  mutation {{ generateApiKey(input: {{ownerId: \"{bot}\", description: \"My integration\"}}) {{ secret apiKey {{ id lastFour }} userErrors {{ field message code }} }} }}\n\
         \nOther demo users: {grace} ({grace_id}), {bot_name} ({bot}).\n\
         Owner mail is written as .eml files to {mail}/ (set LATCHKEY_SMTP_URL with `serve` to send it).\n\
         Press Ctrl-C to stop.",
        mail = args.demo_mail_dir,
        db = args.demo_database,
        ada = cast.ada.name,
        bot = cast.sync_bot.id,
        grace = cast.grace.name,
        grace_id = cast.grace.id,
        bot_name = cast.sync_bot.name,
    )?;
    out.flush()?;
    server.wait().await?;
    Ok(())
}
