//! GitHub's secret-scanning partner requests, with a local ECDSA P-256 key
//! pair and a local server publishing its public keys in GitHub's format.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use latchkey_domain::{ApiKeySecret, NoticeKind};
use latchkey_tests::{AppOptions, TestApp, TestDb};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    github_reports_are_verified_labelled_and_acted_on,
    a_large_batch_is_answered_in_time,
    a_secret_that_no_longer_works_is_a_false_positive,
);

/// GitHub's key listing, served locally: what it publishes can change, and
/// it can fail.
#[derive(Clone)]
struct KeyListing {
    published: Arc<Mutex<Option<String>>>,
    url: String,
}

impl KeyListing {
    async fn start() -> KeyListing {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/meta/public_keys/secret_scanning", listener.local_addr().unwrap());
        let published: Arc<Mutex<Option<String>>> = Arc::default();
        let serving = published.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let body = serving.lock().unwrap().clone();
                let response = match body {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        KeyListing { published, url }
    }

    fn publish(&self, keys: &[(&str, &SigningKey)]) {
        let public_keys: Vec<Value> = keys
            .iter()
            .map(|(id, key)| {
                let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
                json!({ "key_identifier": id, "key": pem, "is_current": true })
            })
            .collect();
        *self.published.lock().unwrap() = Some(json!({ "public_keys": public_keys }).to_string());
    }

    fn fail(&self) {
        *self.published.lock().unwrap() = None;
    }
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

/// Sends `body` as GitHub would, signed by `key` named `id`.
async fn send(app: &TestApp, body: &str, id: &str, key: &SigningKey) -> (u16, Value) {
    let signature: Signature = key.sign(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let resp = app
        .http
        .post(format!("{}/v1/secret-scanning/github", app.url))
        .header("Content-Type", "application/json")
        .header("Github-Public-Key-Identifier", id)
        .header("Github-Public-Key-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn code(app: &TestApp, key: &str) -> String {
    let verdict = app.verify(key).await;
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

async fn started(db: TestDb) -> (TestApp, KeyListing) {
    let listing = KeyListing::start().await;
    let options = AppOptions { github_keys_url: listing.url.clone(), ..AppOptions::default() };
    (TestApp::start_with(db, options).await, listing)
}

fn leaked(app: &TestApp) -> usize {
    app.notifier.delivered().iter().filter(|e| e.kind == NoticeKind::Leaked).count()
}

async fn github_reports_are_verified_labelled_and_acted_on(db: TestDb) {
    let (app, listing) = started(db).await;
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Deploy bot").await;
    let fake = ApiKeySecret::generate().unwrap().expose().to_owned();
    let (first, second) = (signing_key(7), signing_key(9));
    listing.publish(&[("key-1", &first)]);
    let body = json!([
        { "token": secret, "type": "latchkey_api_key", "url": "https://github.com/acme/app/blob/abc/config.yml", "source": "content" },
        { "token": fake, "type": "latchkey_api_key", "url": "https://github.com/x/y", "source": "commit" },
    ])
    .to_string();

    // Unsigned, badly signed, signed by an unknown key, or tampered: 401, nothing changed.
    let resp = app.http.post(format!("{}/v1/secret-scanning/github", app.url)).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(send(&app, &body, "key-1", &second).await.0, 401, "signed by another key");
    assert_eq!(send(&app, &body, "key-unknown", &first).await.0, 401, "an identifier GitHub does not publish");
    let signature: Signature = first.sign(body.as_bytes());
    let tampered = body.replace("config.yml", "other.yml");
    let resp = app
        .http
        .post(format!("{}/v1/secret-scanning/github", app.url))
        .header("Github-Public-Key-Identifier", "key-1")
        .header(
            "Github-Public-Key-Signature",
            base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes()),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a tampered body");
    assert_eq!(code(&app, &secret).await, "VALID", "nothing changed");

    // Signed: labels for each match, and the real key is revoked at once.
    let (status, verdicts) = send(&app, &body, "key-1", &first).await;
    assert_eq!(status, 200, "{verdicts}");
    assert_eq!(
        verdicts,
        json!([
            { "token_hash": latchkey_app::leaks::token_hash(&secret), "token_type": "latchkey_api_key", "label": "true_positive" },
            { "token_hash": latchkey_app::leaks::token_hash(&fake), "token_type": "latchkey_api_key", "label": "false_positive" },
        ])
    );
    assert_eq!(code(&app, &secret).await, "COMPROMISED");
    let audit = app
        .gql(
            Some(&s.admin_token),
            "query($k: ID!) { apiKeyEvents(keyId: $k) { nodes { action actorName leakUrl } } }",
            json!({ "k": id }),
        )
        .await;
    assert_eq!(
        audit["data"]["apiKeyEvents"]["nodes"][0],
        json!({ "action": "LEAK_REPORTED", "actorName": "GitHub secret scanning", "leakUrl": "https://github.com/acme/app/blob/abc/config.yml" })
    );

    // A replayed request changes and mails nothing more.
    let wait = Instant::now();
    while leaked(&app) < 3 && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leaked(&app), 3, "owner and two internal admins");
    let (status, again) = send(&app, &body, "key-1", &first).await;
    assert_eq!((status, again), (200, verdicts));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leaked(&app), 3, "mailed once per leak");

    // GitHub rotates its keys: an unknown identifier fetches them again.
    listing.publish(&[("key-1", &first), ("key-2", &second)]);
    // Fetches are at most every 100 ms here (10 s by default): until then it is unknown.
    let wait = Instant::now();
    while send(&app, "[]", "key-2", &second).await.0 != 200 {
        assert!(wait.elapsed() < Duration::from_secs(5), "the rotated key was never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The listing fails: the cached keys still verify.
    listing.fail();
    tokio::time::sleep(Duration::from_millis(150)).await; // past the refresh interval: the next unknown id fetches
    assert_eq!(send(&app, "[]", "key-3", &second).await.0, 401, "unknown, and the fetch fails");
    assert_eq!(send(&app, "[]", "key-1", &first).await, (200, json!([])), "the cached keys still verify");
    assert_eq!(send(&app, "[]", "key-2", &second).await, (200, json!([])));
    app.stop().await;
}

async fn a_large_batch_is_answered_in_time(db: TestDb) {
    let (app, listing) = started(db).await;
    let s = app.seed("Acme").await;
    let key = signing_key(11);
    listing.publish(&[("key-1", &key)]);
    let mut real = Vec::new();
    for n in 0..5 {
        real.push(app.generate(&s.admin_token, &s.integration, &format!("Real {n}")).await.1);
    }
    let mut matches: Vec<Value> = (0..995)
        .map(|_| json!({ "token": ApiKeySecret::generate().unwrap().expose(), "type": "latchkey_api_key", "url": "https://github.com/x/y", "source": "content" }))
        .collect();
    for secret in &real {
        matches.push(json!({ "token": secret, "type": "latchkey_api_key", "url": "https://github.com/x/y", "source": "content" }));
    }
    let body = Value::Array(matches).to_string();
    let started = Instant::now();
    let (status, verdicts) = send(&app, &body, "key-1", &key).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let labels: Vec<&str> = verdicts.as_array().unwrap().iter().map(|v| v["label"].as_str().unwrap()).collect();
    assert_eq!(labels.len(), 1000);
    assert_eq!(labels.iter().filter(|l| **l == "true_positive").count(), 5);
    assert!(labels[995..].iter().all(|l| *l == "true_positive"));
    assert!(took < Duration::from_secs(5), "1,000 matches took {took:?}");
    eprintln!("secret scanning: 1000 matches answered in {took:?}");
    for secret in &real {
        assert_eq!(code(&app, secret).await, "COMPROMISED");
    }
    app.stop().await;
}

/// A previous secret past its overlap opens nothing: reporting it (GitHub or
/// the public endpoint) is a false positive and leaves the current secret working.
async fn a_secret_that_no_longer_works_is_a_false_positive(db: TestDb) {
    let (app, listing) = started(db).await;
    let s = app.seed("Acme").await;
    let (id, old, _) = app.generate(&s.admin_token, &s.integration, "Deploy bot").await;
    let rotated = app
        .gql(
            Some(&s.admin_token),
            latchkey_tests::ops::ROTATE_WITH,
            json!({ "input": { "id": id, "overlapSeconds": 3600 } }),
        )
        .await;
    let current = rotated["data"]["rotateApiKey"]["secret"].as_str().expect("rotated").to_owned();
    assert_eq!(code(&app, &old).await, "VALID", "in its overlap");
    let ended = app.gql(Some(&s.admin_token), latchkey_tests::ops::EXPIRE_PREVIOUS, json!({ "id": id })).await;
    assert_eq!(ended["data"]["expireApiKeyPreviousSecret"]["userErrors"], json!([]), "{ended}");
    assert_eq!(code(&app, &old).await, "EXPIRED");

    let key = signing_key(7);
    listing.publish(&[("key-1", &key)]);
    let body = json!([{ "token": old, "type": "latchkey_api_key", "url": "https://github.com/acme/app", "source": "content" }]).to_string();
    let (status, verdicts) = send(&app, &body, "key-1", &key).await;
    assert_eq!((status, verdicts[0]["label"].as_str()), (200, Some("false_positive")), "{verdicts}");

    // The public endpoint handles reports in the background: report the dead
    // secret, then a live sentinel key, and wait for the sentinel's revocation.
    let (_, sentinel, _) = app.generate(&s.admin_token, &s.integration, "Sentinel").await;
    for key in [&old, &sentinel] {
        let resp = app
            .http
            .post(format!("{}/v1/keys/report-leak", app.url))
            .json(&json!({ "key": key }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let waited = Instant::now();
    while code(&app, &sentinel).await != "COMPROMISED" {
        assert!(waited.elapsed() < Duration::from_secs(10), "the sentinel report was never handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = app.gql(Some(&s.admin_token), latchkey_tests::ops::GET_KEY_STATE, json!({ "id": id })).await;
    assert_eq!(state["data"]["apiKey"]["status"], "ACTIVE", "{state}");
    assert_eq!(code(&app, &current).await, "VALID", "the current secret still works");
    let audit = app
        .gql(
            Some(&s.admin_token),
            "query($id: ID!) { apiKeyEvents(keyId: $id, first: 50) { nodes { action } } }",
            json!({ "id": id }),
        )
        .await;
    let mut actions: Vec<&str> = audit["data"]["apiKeyEvents"]["nodes"]
        .as_array()
        .expect("the trail")
        .iter()
        .map(|n| n["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    assert_eq!(actions, ["GENERATED", "PREVIOUS_SECRET_EXPIRED", "ROTATED"], "no leak recorded");
    assert!(
        app.notifier
            .delivered()
            .iter()
            .all(|e| e.kind != NoticeKind::Leaked || e.key_last_four == sentinel[sentinel.len() - 4..])
    );
}
