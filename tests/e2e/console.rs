//! The API keys page (Settings › Integrations › API) in headless Chromium,
//! against the real server on a fresh database.

use std::time::Duration;

use chrono::Utc;
use fantoccini::{Client, Locator, key::Key};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{ApiKeySecret, Description};
use latchkey_store::{NewCredential, NewKey};
use latchkey_tests::browser::{Browser, click, js, until};
use latchkey_tests::{Backend, TestApp};
use serde_json::{Value, json};

async fn type_into(c: &Client, css: &str, text: &str) {
    let input = c.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn row_descriptions(c: &Client) -> Vec<String> {
    let v = js(c, "return [...document.querySelectorAll('#rows tr td.desc')].map(td => td.textContent)").await;
    serde_json::from_value(v).unwrap()
}

/// Opens the row menu of the row of `description` and clicks its action
/// (`edit`, `rotate`, `delete`, `details`, …).
async fn row_action(c: &Client, description: &str, action: &str) {
    let rows = c.find_all(Locator::Css("#rows tr")).await.unwrap();
    for row in rows {
        let desc = row.find(Locator::Css("td.desc")).await.unwrap().text().await.unwrap();
        if desc == description {
            row.find(Locator::Css("button[data-action='menu']")).await.unwrap().click().await.unwrap();
            row.find(Locator::Css(&format!("[role=menu] button[data-action='{action}']")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            return;
        }
    }
    panic!("no row for {description:?}");
}

/// Saves the page as `docs/<name>.png` when LATCHKEY_UPDATE_SCREENSHOT is set,
/// else in the temporary directory.
async fn screenshot(c: &Client, name: &str) {
    let shot = c.screenshot().await.unwrap();
    let target = if std::env::var("LATCHKEY_UPDATE_SCREENSHOT").is_ok() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/{name}.png"))
    } else {
        std::env::temp_dir().join(format!("latchkey-{name}.png"))
    };
    std::fs::write(&target, shot).unwrap();
}

/// Opens the generate dialog with `owner` chosen and `description` typed.
async fn open_generate(c: &Client, owner: &latchkey_domain::User, description: &str) {
    click(c, "#generate").await;
    until(c, "return document.getElementById('generate-dialog').open").await;
    c.find(Locator::Css("#generate-owner")).await.unwrap().select_by_value(&owner.id.to_string()).await.unwrap();
    type_into(c, "#generate-description", description).await;
}

/// Reads the secret from the show-once dialog, copies it, closes the dialog.
async fn take_secret(c: &Client) -> String {
    until(c, "return document.getElementById('secret-dialog').open && document.getElementById('secret-value').textContent.length > 0").await;
    let secret = text(c, "#secret-value").await;
    click(c, "#copy-secret").await;
    until(c, "return document.getElementById('copy-status').textContent.length > 0").await;
    click(c, "#secret-done").await;
    if js(c, "return document.getElementById('secret-dialog').open").await == json!(true) {
        // Copying is not allowed in this browser: confirm closing without it.
        click(c, "#secret-discard").await;
    }
    until(c, "return !document.getElementById('secret-dialog').open").await;
    let page = js(c, "return document.documentElement.outerHTML").await;
    assert!(!page.as_str().unwrap().contains(&secret), "the secret is dropped from the DOM");
    secret
}

async fn seed_keys(app: &TestApp, s: &latchkey_tests::Seeded, count: usize, prefix: &str) {
    let hash = hash_secret(&ApiKeySecret::generate().unwrap());
    for i in 0..count {
        let secret = ApiKeySecret::generate().unwrap();
        let credential = NewCredential::new(&secret, hash.clone());
        let description = Description::parse(&format!("{prefix} {i:02}")).unwrap();
        let new = NewKey::new(s.tenant.id, s.integration.id, description, credential);
        latchkey_tests::insert_generated_key(&app.store, new, &s.admin).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_page_end_to_end() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    let s = app.seed("Acme Learning").await;

    // Demo-like data: a legacy key and a few generated ones.
    let legacy = ApiKeySecret::generate().unwrap();
    let credential = NewCredential::new(&legacy, hash_secret(&legacy));
    // It expired yesterday.
    let new =
        NewKey::new(s.tenant.id, s.integration.id, Description::parse("HR export (imported)").unwrap(), credential)
            .expiring_at(Some(Utc::now() - chrono::Duration::days(1)));
    app.store.import_legacy_key(new, Utc::now() - chrono::Duration::days(400)).await.unwrap();
    app.generate(&s.admin_token, &s.integration, "Salesforce sync").await;
    app.generate(&s.admin_token, &s.other_admin, "Course catalogue import").await;
    let (_, used, _) = app.generate(&s.admin_token, &s.admin, "Reporting dashboard").await;
    app.verify(&used).await;
    tokio::time::sleep(Duration::from_millis(700)).await; // last use is flushed

    // Sign in with the link's fragment; the token leaves the address bar.
    c.goto(&format!("{}/settings/integrations/api#token={}", app.url, s.admin_token)).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 4").await;
    assert_eq!(js(c, "return location.hash").await, json!(""));
    assert_eq!(
        js(c, "return getComputedStyle(document.getElementById('banner')).display").await,
        "none",
        "no error banner"
    );
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, json!(s.admin_token));
    assert_eq!(
        row_descriptions(c).await,
        ["Reporting dashboard", "Course catalogue import", "Salesforce sync", "HR export (imported)"]
    );
    let legacy_row = js(
        c,
        "const td = document.querySelector('#rows tr:last-child td:nth-child(7)'); return [td.textContent, td.title]",
    )
    .await;
    assert_eq!(legacy_row[0], "—");
    assert!(legacy_row[1].as_str().unwrap().contains("before key management"));
    let first_key = text(c, "#rows tr:first-child td.key").await;
    assert_eq!(first_key, format!("••••{}", &used[used.len() - 4..]));
    assert!(text(c, "#rows tr:first-child td:nth-child(8)").await != "Never", "last used is shown");
    // Status and expiry: the imported key expired, the others never expire.
    let expired_row = js(
        c,
        "const tr = document.querySelector('#rows tr:last-child'); \
        return [tr.querySelector('td:nth-child(5)').textContent, tr.querySelector('td.expires').textContent]",
    )
    .await;
    assert_eq!(expired_row, json!(["Expired", "Expired"]));
    let active_row = js(
        c,
        "const tr = document.querySelector('#rows tr:first-child'); \
        return [tr.querySelector('td:nth-child(5)').textContent, tr.querySelector('td.expires').textContent]",
    )
    .await;
    assert_eq!(active_row, json!(["Active", "Never"]));
    assert_eq!(text(c, "#rows tr:first-child td.access").await, "Full access");

    // What the page weighs and how soon the table shows.
    let metrics = js(
        c,
        "const r = performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')); \
        const assets = r.filter(e => !e.name.endsWith('/graphql')); \
        return { bytes: assets.reduce((n, e) => n + (e.decodedBodySize || 0), 0), \
                 transferred: assets.reduce((n, e) => n + (e.transferSize || 0), 0), \
                 rendered: performance.getEntriesByName('api-keys-table-rendered')[0].startTime }",
    )
    .await;
    eprintln!(
        "page: {:.1} KiB of HTML/JS/CSS ({:.1} KiB transferred), first table render at {:.0} ms",
        metrics["bytes"].as_f64().unwrap() / 1024.0,
        metrics["transferred"].as_f64().unwrap() / 1024.0,
        metrics["rendered"].as_f64().unwrap()
    );
    screenshot(c, "api-keys-page").await;

    // Generate for the integration user; the secret works.
    open_generate(c, &s.integration, "Browser made").await;
    click(c, "#generate-form button[type=submit]").await;
    let secret = take_secret(c).await;
    assert_eq!(app.verify(&secret).await["valid"], true);
    until(c, "return document.querySelectorAll('#rows tr').length === 5").await;
    assert_eq!(row_descriptions(c).await[0], "Browser made");

    // A userError shows next to its field; Escape closes the dialog.
    click(c, "#generate").await;
    type_into(c, "#generate-description", "   ").await;
    click(c, "#generate-form button[type=submit]").await;
    until(c, "return document.getElementById('generate-description-error').textContent.length > 0").await;
    assert!(text(c, "#generate-description-error").await.contains("blank"));
    assert_eq!(
        js(c, "return document.getElementById('generate-description').getAttribute('aria-invalid')").await,
        "true"
    );
    c.active_element().await.unwrap().send_keys(&Key::Escape.to_string()).await.unwrap();
    until(c, "return !document.getElementById('generate-dialog').open").await;

    // Rotate at once: new secret once; the old one stops working.
    row_action(c, "Browser made", "rotate").await;
    until(c, "return document.getElementById('rotate-dialog').open").await;
    assert!(text(c, "#rotate-text").await.contains("Browser made"));
    assert_eq!(js(c, "return document.getElementById('rotate-overlap').value").await, "0", "at once by default");
    click(c, "#rotate-ok").await;
    let rotated = take_secret(c).await;
    assert_ne!(rotated, secret);
    assert_eq!(app.verify(&secret).await["code"], "INVALID");
    assert_eq!(app.verify(&rotated).await["valid"], true);

    // Rotate keeping the old secret for an hour: both work, the row shows the
    // overlap, and "End now" stops the old one.
    row_action(c, "Browser made", "rotate").await;
    until(c, "return document.getElementById('rotate-dialog').open").await;
    c.find(Locator::Css("#rotate-overlap")).await.unwrap().select_by_value("3600").await.unwrap();
    click(c, "#rotate-ok").await;
    let overlapping = take_secret(c).await;
    assert_eq!(app.verify(&rotated).await["valid"], true, "the old secret works for the hour");
    assert_eq!(app.verify(&overlapping).await["valid"], true);
    until(c, "return !!document.querySelector('#rows tr:first-child .overlap')").await;
    let badge = text(c, "#rows tr:first-child .overlap").await;
    assert!(badge.contains(&format!("Old secret ••••{} works until", &rotated[rotated.len() - 4..])), "{badge}");
    click(c, "#rows tr:first-child button[data-action='end-overlap']").await;
    until(c, "return document.getElementById('confirm-dialog').open").await;
    click(c, "#confirm-ok").await;
    until(c, "return !document.querySelector('#rows tr:first-child .overlap')").await;
    assert_eq!(app.verify(&rotated).await["code"], "EXPIRED");
    assert_eq!(app.verify(&overlapping).await["valid"], true);

    // Disable (confirmed) and enable: the status follows, the same secret works again.
    row_action(c, "Browser made", "disable").await;
    until(c, "return document.getElementById('confirm-dialog').open").await;
    click(c, "#confirm-ok").await;
    until(c, "return document.querySelector('#rows tr:first-child td:nth-child(5)').textContent === 'Disabled'").await;
    assert_eq!(app.verify(&overlapping).await["code"], "DISABLED");
    row_action(c, "Browser made", "enable").await;
    until(c, "return document.querySelector('#rows tr:first-child td:nth-child(5)').textContent === 'Active'").await;
    assert_eq!(app.verify(&overlapping).await["valid"], true);

    // Restrict it: users read-only, customer cloud, one network (a typo is flagged as typed).
    row_action(c, "Browser made", "restrictions").await;
    until(c, "return document.getElementById('restrict-dialog').open").await;
    assert_eq!(js(c, "return document.getElementById('restrict-r-full').checked").await, json!(true));
    click(c, "#restrict-r-full").await;
    c.find(Locator::Css("#restrict-r-perm-users")).await.unwrap().select_by_value("read").await.unwrap();
    click(c, "#restrict-r-cloud-employee").await;
    type_into(c, "#restrict-r-ips", "10.0.0.0/8\nnot-an-ip").await;
    until(c, "return document.getElementById('restrict-r-ips-error').textContent.includes('not-an-ip')").await;
    type_into(c, "#restrict-r-ips", "10.0.0.0/8").await;
    until(c, "return document.getElementById('restrict-r-ips-error').textContent === ''").await;
    click(c, "#restrict-ok").await;
    until(c, "return !document.getElementById('restrict-dialog').open").await;
    assert_eq!(text(c, "#rows tr:first-child td.access").await, "1 permission · Customer cloud · 1 network");
    let verify = |body: Value| {
        let app = &app;
        async move {
            let resp = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&body).send().await.unwrap();
            resp.json::<Value>().await.unwrap()
        }
    };
    let inside = json!({ "key": overlapping, "cloud": "CUSTOMER", "ip": "10.1.2.3", "permissions": ["users:read"] });
    assert_eq!(verify(inside).await["valid"], true);
    let writing = json!({ "key": overlapping, "cloud": "CUSTOMER", "ip": "10.1.2.3", "permissions": ["users:write"] });
    assert_eq!(verify(writing).await["code"], "INSUFFICIENT_PERMISSIONS");
    // A server-side refusal shows next to its field too: no cloud at all.
    row_action(c, "Browser made", "restrictions").await;
    until(c, "return document.getElementById('restrict-dialog').open").await;
    assert_eq!(
        js(c, "return document.getElementById('restrict-r-perm-users').value").await,
        "read",
        "the dialog shows the key's restrictions"
    );
    click(c, "#restrict-r-cloud-customer").await;
    click(c, "#restrict-ok").await;
    until(c, "return document.getElementById('restrict-r-clouds-error').textContent.length > 0").await;
    c.active_element().await.unwrap().send_keys(&Key::Escape.to_string()).await.unwrap();
    until(c, "return !document.getElementById('restrict-dialog').open").await;

    // Edit in a dialog.
    row_action(c, "Browser made", "edit").await;
    until(c, "return document.getElementById('edit-dialog').open").await;
    type_into(c, "#edit-description", "Browser edited").await;
    click(c, "#edit-form button[type=submit]").await;
    until(c, "return [...document.querySelectorAll('#rows td.desc')].some(td => td.textContent === 'Browser edited')")
        .await;

    // A hostile description is text, not markup.
    let hostile = "<img src=x onerror=alert(1)>";
    click(c, "#generate").await;
    type_into(c, "#generate-description", hostile).await;
    click(c, "#generate-form button[type=submit]").await;
    take_secret(c).await;
    until(
        c,
        &format!(
            "return [...document.querySelectorAll('#rows td.desc')].some(td => td.textContent === {})",
            json!(hostile)
        ),
    )
    .await;
    assert_eq!(js(c, "return document.querySelectorAll('#rows img').length").await, json!(0));

    // Generate with an expiry date: the table says when it expires.
    click(c, "#generate").await;
    until(c, "return document.getElementById('generate-dialog').open").await;
    type_into(c, "#generate-description", "Expiring soon").await;
    let in_ten_days = js(c, "const d = new Date(Date.now() + 10 * 86400000); \
        return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`")
    .await;
    js(c, &format!("const i = document.getElementById('generate-expires'); i.value = {in_ten_days}; return i.value"))
        .await;
    // Only reports, read-only.
    click(c, "#generate-r-full").await;
    c.find(Locator::Css("#generate-r-perm-reports")).await.unwrap().select_by_value("read").await.unwrap();
    click(c, "#generate-form button[type=submit]").await;
    take_secret(c).await;
    until(c, "return [...document.querySelectorAll('#rows td.desc')].some(td => td.textContent === 'Expiring soon')")
        .await;
    let expiry = text(c, "#rows tr:first-child td.expires").await;
    assert!(expiry == "Expires in 10 days" || expiry == "Expires in 11 days", "{expiry}");
    assert_eq!(text(c, "#rows tr:first-child td.access").await, "1 permission");
    // A date too far ahead is refused next to the field.
    click(c, "#generate").await;
    until(c, "return document.getElementById('generate-dialog').open").await;
    type_into(c, "#generate-description", "Too far").await;
    js(c, "document.getElementById('generate-expires').value = '2099-01-01'; return true").await;
    click(c, "#generate-form button[type=submit]").await;
    until(c, "return document.getElementById('generate-expires-error').textContent.length > 0").await;
    assert!(text(c, "#generate-expires-error").await.contains("366 days"));
    c.active_element().await.unwrap().send_keys(&Key::Escape.to_string()).await.unwrap();
    until(c, "return !document.getElementById('generate-dialog').open").await;

    // Delete, with a confirmation naming the key.
    row_action(c, hostile, "delete").await;
    until(c, "return document.getElementById('confirm-dialog').open").await;
    assert!(text(c, "#confirm-text").await.contains(hostile));
    click(c, "#confirm-ok").await;
    until(
        c,
        &format!(
            "return ![...document.querySelectorAll('#rows td.desc')].some(td => td.textContent === {})",
            json!(hostile)
        ),
    )
    .await;

    // Paging and search over 60 more keys.
    seed_keys(&app, &s, 60, "Batch key").await;
    c.refresh().await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 25").await;
    assert!(text(c, "#count").await.contains("of 66"), "{}", text(c, "#count").await);
    click(c, "#more").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 50").await;
    click(c, "#more").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 66").await;
    assert_eq!(js(c, "return document.getElementById('more').hidden").await, json!(true));
    type_into(c, "#search", "BATCH KEY 1").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 10").await;
    assert!(row_descriptions(c).await.iter().all(|d| d.starts_with("Batch key 1")));
    c.find(Locator::Css("#owner-filter")).await.unwrap().select_by_value(&s.admin.id.to_string()).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 0").await;
    assert!(text(c, "#count").await.contains("No keys match"));

    // Narrow screens: no sideways scrolling.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let overflow = js(c, "return [document.documentElement.scrollWidth, window.innerWidth, \
        [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)]").await;
    assert!(overflow[0].as_f64() <= overflow[1].as_f64(), "sideways scrolling at 390 px: {overflow}");
    c.set_window_size(1280, 900).await.unwrap();

    // A link followed later does not quietly switch the tab to someone else:
    // the page asks, and staying keeps the session as it was.
    let page = format!("{}/settings/integrations/api", app.url);
    let other = app.seed("Other").await;
    let who_before = text(c, "#who").await;
    let token_before = js(c, "return sessionStorage.getItem('latchkey.adminToken')").await;
    c.goto(&format!("{page}#token={}", other.admin_token)).await.unwrap();
    until(c, "return document.getElementById('switch-dialog').open").await;
    assert_eq!(js(c, "return location.hash").await, json!(""), "the token leaves the address bar");
    let offer = text(c, "#switch-text").await;
    assert!(offer.contains(&other.admin.name) && offer.contains("Other"), "{offer}");
    assert!(text(c, "#switch-current").await.contains(&s.admin.name));
    assert_eq!(text(c, "#who").await, who_before, "nothing switched while asking");
    click(c, "#switch-stay").await;
    until(c, "return !document.getElementById('switch-dialog').open").await;
    assert_eq!(text(c, "#who").await, who_before);
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, token_before);
    // Switching is one click away when it is wanted.
    c.goto(&format!("{page}#token={}", other.admin_token)).await.unwrap();
    until(c, "return document.getElementById('switch-dialog').open").await;
    click(c, "#switch-ok").await;
    until(c, "return document.getElementById('who').textContent.includes('Other')").await;
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, json!(other.admin_token));
    // A fresh token of the same person in the same tenant is taken without asking.
    let fresh = app.token_key.sign(&latchkey_domain::admin_token::AdminClaims {
        sub: other.admin.id,
        tid: other.tenant.id,
        cloud: latchkey_domain::Cloud::Employee,
        exp: Utc::now().timestamp() + 7200,
        iat: Utc::now().timestamp(),
    });
    c.goto(&format!("{page}#token={fresh}")).await.unwrap();
    until(c, &format!("return sessionStorage.getItem('latchkey.adminToken') === '{fresh}'")).await;
    assert_eq!(js(c, "return document.getElementById('switch-dialog').open").await, json!(false));

    // A refused token sends you back to sign in, with the reason (on a first load).
    c.goto("about:blank").await.unwrap();
    let expired = app.token_key.sign(&latchkey_domain::admin_token::AdminClaims {
        sub: s.admin.id,
        tid: s.tenant.id,
        cloud: latchkey_domain::Cloud::Employee,
        exp: Utc::now().timestamp() - 3600,
        iat: Utc::now().timestamp() - 7200,
    });
    c.goto(&format!("{}/settings/integrations/api#token={expired}", app.url)).await.unwrap();
    until(c, "return !document.getElementById('signin').hidden").await;
    assert!(text(c, "#signin-message").await.contains("expired"));
    // A later link's refused token is reported, and signs no one in.
    c.goto(&format!("{page}#token={expired}")).await.unwrap();
    until(c, "return !document.getElementById('banner').hidden").await;
    assert!(text(c, "#banner-text").await.contains("expired"));
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, Value::Null);
    // ...and signing in through the form works.
    type_into(c, "#token-input", &s.admin_token).await;
    click(c, "#signin-form button[type=submit]").await;
    until(c, "return !document.getElementById('keys').hidden && document.querySelectorAll('#rows tr').length > 0")
        .await;

    // The page forbids inline script.
    let resp = app.http.get(format!("{}/settings/integrations/api", app.url)).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");

    browser.client.clone().close().await.unwrap();
    app.stop().await;
}

/// Usage on the page: the row's "Last 30 days" count and sparkline, the
/// detail panel's charts (30 days by day, 48 hours by hour) with the counts
/// the test produced, the last use rendered as text, the audit trail, the
/// "Unused for 90 days" filter and the report download. Rows are one line
/// high at 1366 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_charted_on_the_page() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    c.set_window_size(1366, 900).await.unwrap();
    let s = app.seed("Acme Learning").await;
    let legacy = ApiKeySecret::generate().unwrap();
    let stale = NewKey::new(
        s.tenant.id,
        s.integration.id,
        Description::parse("Old LMS bridge").unwrap(),
        NewCredential::new(&legacy, hash_secret(&legacy)),
    );
    app.store.import_legacy_key(stale, Utc::now() - chrono::Duration::days(400)).await.unwrap();
    app.generate(&s.admin_token, &s.other_admin, "Course catalogue import with a long description that is cut").await;
    let (id, busy, _) = app.generate(&s.admin_token, &s.integration, "Salesforce sync").await;
    let agent = "<img src=x onerror=alert(1)> sync-agent/2.1";
    let verify = |body: Value| {
        let (http, url) = (app.http.clone(), app.url.clone());
        async move { http.post(format!("{url}/v1/keys/verify")).json(&body).send().await.unwrap() }
    };
    for _ in 0..4 {
        verify(json!({ "key": busy, "cloud": "CUSTOMER", "ip": "198.51.100.7", "userAgent": agent })).await;
    }
    app.gql(Some(&s.admin_token), latchkey_tests::ops::DISABLE, json!({ "id": id })).await;
    for _ in 0..2 {
        assert_eq!(app.verify(&busy).await["code"], "DISABLED");
    }
    app.gql(Some(&s.admin_token), latchkey_tests::ops::ENABLE, json!({ "id": id })).await;
    let counted = "query($id: ID!) { apiKey(id: $id) { usage30d } }";
    for _ in 0..100 {
        if app.gql(Some(&s.admin_token), counted, json!({ "id": id })).await["data"]["apiKey"]["usage30d"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.goto(&format!("{}/settings/integrations/api#token={}", app.url, s.admin_token)).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 3").await;
    let heights =
        js(c, "return [...document.querySelectorAll('#rows tr')].map(tr => tr.getBoundingClientRect().height)").await;
    for height in heights.as_array().unwrap() {
        assert!(height.as_f64().unwrap() <= 48.0, "a row is one line high: {heights}");
    }
    let overflow = js(c, "return document.documentElement.scrollWidth <= innerWidth").await;
    assert_eq!(overflow, json!(true), "only the table scrolls, never the page");
    let fits = js(c, "const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth").await;
    assert_eq!(fits, json!(true), "at 1366 px the whole table, row menus included, fits");
    let busy_row = "#rows tr:first-child";
    assert_eq!(text(c, &format!("{busy_row} td.usage .usage-count")).await, "4");
    let bars = js(
        c,
        &format!("return [...document.querySelectorAll('{busy_row} td.usage rect')].map(r => r.getAttribute('class'))"),
    )
    .await;
    let bars: Vec<String> = serde_json::from_value(bars).unwrap();
    assert_eq!(bars.len(), 30);
    assert_eq!((bars[29].as_str(), bars[0].as_str()), ("spark-bar", "spark-empty"), "today has uses, a month ago none");

    // The detail panel: today's bar holds the 4 valid and 2 refused verifications.
    row_action(c, "Salesforce sync", "details").await;
    until(c, "return document.querySelectorAll('#detail-chart g.bucket').length === 30").await;
    let today = js(
        c,
        "const g = [...document.querySelectorAll('#detail-chart g.bucket')].pop(); \
        return [g.dataset.valid, g.dataset.refused, g.querySelector('title').textContent]",
    )
    .await;
    assert_eq!(today[0], "4");
    assert_eq!(today[1], "2");
    assert!(today[2].as_str().unwrap().ends_with("4 valid, 2 refused"), "{today}");
    assert_eq!(text(c, "#detail-totals").await, "4 valid, 2 refused");
    assert!(text(c, "#detail-chart figcaption").await.contains("Refused"));
    let facts = js(c, "return [...document.querySelectorAll('#detail-last-use dd')].map(d => d.textContent)").await;
    assert_eq!(facts[1], "Customer cloud");
    assert_eq!(facts[2], "198.51.100.7");
    assert_eq!(facts[3], agent, "the user agent is text");
    assert_eq!(js(c, "return document.querySelectorAll('#detail-dialog img').length").await, json!(0));
    let audit = text(c, "#detail-audit").await;
    assert!(audit.contains("Generated") && audit.contains("Disabled") && audit.contains("Enabled"), "{audit}");
    screenshot(c, "api-keys-usage").await;
    click(c, "#detail-range button[data-view='hours']").await;
    until(c, "return document.querySelectorAll('#detail-chart g.bucket').length === 48").await;
    let hourly = js(c, "return [...document.querySelectorAll('#detail-chart g.bucket')].map(g => +g.dataset.valid).reduce((a, b) => a + b, 0)").await;
    assert_eq!(hourly, json!(4));
    click(c, "#detail-dialog button[data-close]").await;
    until(c, "return !document.getElementById('detail-dialog').open").await;

    // "Unused for 90 days": only the key imported 400 days ago and never used.
    click(c, "#unused-filter").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    assert_eq!(row_descriptions(c).await, ["Old LMS bridge"]);
    click(c, "#unused-filter").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 3").await;

    // "Download report": the CSV the server made, with every key.
    // The download link is caught (a headless browser saves nowhere) and its blob read back.
    js(c, "window.__report = null; const click = HTMLAnchorElement.prototype.click; \
        const blobUrl = URL.createObjectURL; URL.createObjectURL = (blob) => { window.__blob = blob; return blobUrl(blob); }; \
        HTMLAnchorElement.prototype.click = function () { if (this.download) { window.__report = [this.download, this.href]; } else { click.call(this); } }; \
        return true").await;
    click(c, "#download-report").await;
    until(c, "return Array.isArray(window.__report)").await;
    assert!(js(c, "return window.__report[0]").await.as_str().unwrap().ends_with(".csv"));
    let csv = c
        .execute_async("const done = arguments[arguments.length - 1]; window.__blob.text().then(done)", vec![])
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("id,last_four,description,"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.lines().any(|l| l.starts_with(&id) && l.ends_with(",4,2")), "{csv}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_credits_are_set_and_edited_on_the_page() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    c.set_window_size(1366, 900).await.unwrap();
    let s = app.seed("Acme Learning").await;
    app.generate(&s.admin_token, &s.integration, "Unlimited bridge").await;
    c.goto(&format!("{}/settings/integrations/api#token={}", app.url, s.admin_token)).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    assert_eq!(text(c, "#rows tr td.credits").await, "—");
    assert_eq!(js(c, "return document.querySelector('#rows tr td.credits').title").await, "Unlimited");

    // Generate with a rate limit and daily-refilled credits.
    open_generate(c, &s.integration, "Metered sync").await;
    click(c, "#generate-l-add-limit").await;
    type_into(c, "#generate-l-limit-0-name", "burst").await;
    type_into(c, "#generate-l-limit-0-limit", "3").await;
    click(c, "#generate-l-credits-on").await;
    type_into(c, "#generate-l-credits-remaining", "5").await;
    c.find(Locator::Css("#generate-l-refill")).await.unwrap().select_by_value("DAILY").await.unwrap();
    type_into(c, "#generate-l-refill-amount", "50").await;
    // A bad limit is refused next to the limits, and nothing is generated.
    type_into(c, "#generate-l-limit-0-limit", "0").await;
    click(c, "#generate-form button[type=submit]").await;
    until(c, "return document.getElementById('generate-l-limits-error').textContent.length > 0").await;
    assert!(text(c, "#generate-l-limits-error").await.contains("1 to 1000000000"));
    type_into(c, "#generate-l-limit-0-limit", "3").await;
    click(c, "#generate-form button[type=submit]").await;
    let secret = take_secret(c).await;
    until(c, "return document.querySelectorAll('#rows tr').length === 2").await;
    assert_eq!(text(c, "#rows tr:first-child td.credits").await, "5");
    let answer = app.verify(&secret).await;
    assert_eq!(answer["limits"][0]["name"], "burst", "{answer}");
    assert_eq!(answer["credits"]["remaining"], 4);

    // The key's panel shows them; the limit is raised and credits are added there.
    c.refresh().await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 2").await;
    row_action(c, "Metered sync", "details").await;
    until(
        c,
        "return document.getElementById('detail-dialog').open && !!document.getElementById('detail-l-limit-0-name')",
    )
    .await;
    assert_eq!(js(c, "return document.getElementById('detail-l-limit-0-name').value").await, "burst");
    assert_eq!(js(c, "return document.getElementById('detail-l-credits-remaining').value").await, "4");
    assert_eq!(js(c, "return document.getElementById('detail-l-refill').value").await, "DAILY");
    type_into(c, "#detail-l-limit-0-limit", "30").await;
    click(c, "#detail-limits-form button[type=submit]").await;
    until(c, "return document.getElementById('detail-limits-status').textContent.startsWith('Saved')").await;
    type_into(c, "#detail-topup", "10").await;
    click(c, "#detail-topup-form button[type=submit]").await;
    until(c, "return document.getElementById('detail-l-credits-remaining').value === '14'").await;
    until(c, "return document.getElementById('detail-audit').textContent.includes('Credits added')").await;
    assert!(text(c, "#detail-audit").await.contains("Limits changed"));
    screenshot(c, "api-keys-limits").await;
    click(c, "#detail-dialog button[data-close]").await;
    until(c, "return !document.getElementById('detail-dialog').open").await;
    assert_eq!(text(c, "#rows tr:first-child td.credits").await, "14");
    let answer = app.verify(&secret).await;
    assert_eq!(answer["limits"][0]["limit"], 30, "{answer}");
    assert_eq!(answer["credits"]["remaining"], 13, "saving the limit kept the credits' period: {answer}");
    let fits = js(c, "const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth").await;
    assert_eq!(fits, json!(true), "at 1366 px the table with its credits column fits");
    app.stop().await;
}

/// Opens the menu of the first row of the table body `rows` and clicks its `action`.
async fn first_row_action(c: &Client, rows: &str, action: &str) {
    click(c, &format!("#{rows} tr:first-child button[data-action='menu']")).await;
    click(c, &format!("#{rows} tr:first-child [role=menu] button[data-action='{action}']")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_managed_on_the_page() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    c.set_window_size(1366, 900).await.unwrap();
    let s = app.seed("Acme Learning").await;
    let receiver = latchkey_tests::webhooks::Receiver::start().await;
    c.goto(&format!("{}/settings/integrations/webhooks#token={}", app.url, s.admin_token)).await.unwrap();
    until(
        c,
        "return !document.getElementById('webhooks').hidden && !document.getElementById('endpoints-empty').hidden",
    )
    .await;
    assert!(js(c, "return document.getElementById('keys').hidden").await == json!(true), "only the webhooks section");
    assert_eq!(text(c, "#crumb-page").await, "Webhooks");
    assert_eq!(js(c, "return document.getElementById('tab-webhooks').getAttribute('aria-current')").await, "page");

    // A bad URL is refused next to its field; nothing is added.
    click(c, "#add-endpoint").await;
    until(c, "return document.getElementById('endpoint-dialog').open").await;
    type_into(c, "#endpoint-url", "ftp://files.example.com/in").await;
    click(c, "#endpoint-form button[type=submit]").await;
    until(c, "return document.getElementById('endpoint-url-error').textContent.length > 0").await;
    assert!(text(c, "#endpoint-url-error").await.contains("https"));
    // The receiver, for two event types picked from the list.
    type_into(c, "#endpoint-url", &receiver.url()).await;
    type_into(c, "#endpoint-description", "Secrets manager <b>sync</b>").await;
    click(c, "#endpoint-all-types").await;
    click(c, "#endpoint-type-api_key-created").await;
    click(c, "#endpoint-type-api_key-rotated").await;
    click(c, "#endpoint-form button[type=submit]").await;
    let secret = take_secret(c).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    until(c, "return document.querySelectorAll('#endpoint-rows tr').length === 1").await;
    assert_eq!(text(c, "#endpoint-rows td.events").await, "api_key.created, api_key.rotated");
    assert_eq!(text(c, "#endpoint-rows td.desc").await, "Secrets manager <b>sync</b>", "rendered as text");

    // A key event and a test event reach the receiver; the log shows them.
    app.generate(&s.admin_token, &s.integration, "Nightly export").await;
    first_row_action(c, "endpoint-rows", "test").await;
    until(c, "return !document.getElementById('delivery-log').hidden").await;
    let received = receiver.wait_for(2, Duration::from_secs(20)).await;
    let types: Vec<String> = received.iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types.iter().filter(|t| *t == "webhook.test").count(), 1, "{types:?}");
    if latchkey_tests::webhooks::reference_library() {
        let verdicts = latchkey_tests::webhooks::verify_with_reference_library(&secret, &received);
        assert!(verdicts.iter().all(Result::is_ok), "the secret shown once verifies: {verdicts:?}");
    }
    for _ in 0..100 {
        click(c, "#delivery-refresh").await;
        let done = js(c, "return [...document.querySelectorAll('#delivery-rows tr')].filter(tr => tr.textContent.includes('Succeeded')).length").await;
        if done == json!(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until(c, "return document.querySelectorAll('#delivery-rows tr').length === 2").await;
    assert!(text(c, "#delivery-rows").await.contains("HTTP 200"));
    screenshot(c, "webhooks-page").await;

    // Redeliver sends the newest one again, with the same webhook-id.
    first_row_action(c, "delivery-rows", "redeliver").await;
    let again = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert!(again[..2].iter().any(|r| r.id() == again[2].id()));

    // Rows stay one line; the endpoint is disabled from its menu, then deleted.
    let height = js(c, "return document.querySelector('#endpoint-rows tr').getBoundingClientRect().height").await;
    assert!(height.as_f64().unwrap() <= 48.0, "one line: {height}");
    first_row_action(c, "endpoint-rows", "disable").await;
    until(c, "return document.querySelector('#endpoint-rows tr').textContent.includes('Disabled')").await;
    first_row_action(c, "endpoint-rows", "delete").await;
    until(c, "return document.getElementById('confirm-dialog').open").await;
    click(c, "#confirm-ok").await;
    until(c, "return document.querySelectorAll('#endpoint-rows tr').length === 0").await;
    // The tab back to the keys.
    click(c, "#tab-keys").await;
    until(c, "return !document.getElementById('keys').hidden && document.querySelectorAll('#rows tr').length === 1")
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_policy_is_shown_edited_and_kept_by_the_dialogs() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    c.set_window_size(1366, 900).await.unwrap();
    let s = app.seed("Acme Learning").await;
    app.generate(&s.admin_token, &s.integration, "Legacy sync").await;
    c.goto(&format!("{}/settings/integrations/api#token={}", app.url, s.admin_token)).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    assert!(text(c, "#policy-summary").await.starts_with("No rules"));

    // An out-of-range rule is refused next to its field; then the policy is set.
    click(c, "#edit-policy").await;
    until(c, "return document.getElementById('policy-dialog').open").await;
    type_into(c, "#policy-lifetime", "3651").await;
    click(c, "#policy-form button[type=submit]").await;
    until(c, "return document.getElementById('policy-lifetime-error').textContent.length > 0").await;
    assert!(text(c, "#policy-lifetime-error").await.contains("3650"));
    assert!(text(c, "#policy-summary").await.starts_with("No rules"), "nothing changed");
    type_into(c, "#policy-lifetime", "90").await;
    type_into(c, "#policy-overlap", "3600").await;
    click(c, "#policy-require-restrictions").await;
    click(c, "#policy-form button[type=submit]").await;
    until(c, "return !document.getElementById('policy-dialog').open").await;
    until(c, "return document.getElementById('policy-summary').textContent.includes('within 90 days')").await;
    assert!(text(c, "#policy-summary").await.contains("must name their permissions"));
    // The old key is marked, keeps its status, and is what the filter shows.
    until(c, "return document.querySelector('#rows tr .status-policy') !== null").await;
    let title = js(c, "return document.querySelector('#rows tr .status-policy').title").await;
    assert!(title.as_str().unwrap().contains("has full access"), "{title}");
    assert_eq!(text(c, "#rows tr .status-active").await, "Active");

    // The generate dialog keeps the rules: expiry required within 90 days, no full access.
    click(c, "#generate").await;
    until(c, "return document.getElementById('generate-dialog').open").await;
    let picker =
        js(c, "const p = document.getElementById('generate-expires'); return [p.required, p.max, p.value]").await;
    let latest = (chrono::Local::now() + chrono::Duration::days(89)).format("%Y-%m-%d").to_string();
    assert_eq!(picker, json!([true, latest, latest]));
    let full = js(c, "const f = document.getElementById('generate-r-full'); return [f.checked, f.disabled]").await;
    assert_eq!(full, json!([false, true]));
    type_into(c, "#generate-description", "Compliant export").await;
    c.find(Locator::Css("#generate-r-perm-reports")).await.unwrap().select_by_value("read").await.unwrap();
    click(c, "#generate-self-rotation").await;
    click(c, "#generate-form button[type=submit]").await;
    take_secret(c).await;
    until(c, "return document.querySelectorAll('#rows tr').length === 2").await;
    let compliant =
        "[...document.querySelectorAll('#rows tr')].find(tr => tr.textContent.includes('Compliant export'))";
    assert_eq!(js(c, &format!("return {compliant}.querySelector('.status-policy') === null")).await, json!(true));
    let keys = app.gql(Some(&s.admin_token), "{ apiKeys { nodes { description selfRotation } } }", json!({})).await;
    let made = keys["data"]["apiKeys"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["description"] == "Compliant export")
        .cloned();
    assert_eq!(made.unwrap()["selfRotation"], true);

    // Only the key that breaks the policy with the filter on.
    click(c, "#policy-filter").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    assert_eq!(row_descriptions(c).await, ["Legacy sync"]);
    // The rotate dialog offers no overlap beyond the policy's hour.
    row_action(c, "Legacy sync", "rotate").await;
    until(c, "return document.getElementById('rotate-dialog').open").await;
    let offered =
        js(c, "return [...document.getElementById('rotate-overlap').options].map(o => [o.value, o.disabled])").await;
    assert_eq!(offered, json!([["0", false], ["3600", false], ["86400", true], ["604800", true]]));
    assert!(text(c, "#rotate-overlap-hint").await.contains("3600 seconds"));
    c.find(Locator::Css("#rotate-overlap")).await.unwrap().select_by_value("3600").await.unwrap();
    click(c, "#rotate-end-on-use").await;
    click(c, "#rotate-ok").await;
    take_secret(c).await;
    // Rotated within the policy (an expiry was given), it no longer breaks the lifetime rule.
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    let title = js(c, "return document.querySelector('#rows tr .status-policy').title").await;
    assert!(!title.as_str().unwrap().contains("lives longer"), "{title}");
    click(c, "#policy-filter").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 2").await;
    // Self-rotation from the row menu; rows stay one line high.
    row_action(c, "Legacy sync", "self-rotation").await;
    let legacy = "[...document.querySelectorAll('#rows tr')].find(tr => tr.textContent.includes('Legacy sync'))";
    until(
        c,
        &format!(
            "return {legacy}.querySelector(\"[data-action='self-rotation']\").textContent === 'Stop self-rotation'"
        ),
    )
    .await;
    js(c, "document.querySelector('#keys .table-wrap').scrollLeft = 0; return true").await;
    screenshot(c, "api-keys-policy").await;
    for height in
        js(c, "return [...document.querySelectorAll('#rows tr')].map(tr => tr.getBoundingClientRect().height)")
            .await
            .as_array()
            .unwrap()
    {
        assert!(height.as_f64().unwrap() <= 48.0, "one line: {height}");
    }
    app.stop().await;
}
