//! The secret is returned once, then never again: not in later responses, not
//! in the log, not in the database (only its SHA-256 hash is stored).

use latchkey_tests::{TestApp, logs};
use serde_json::json;

on_both_backends!(secrets_are_shown_once_and_stored_only_as_hashes);

async fn secrets_are_shown_once_and_stored_only_as_hashes(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Secret keeper").await;
    let rotated_secret = app.rotate(&s.admin_token, &id).await;
    // Use both secrets (valid and revoked) so verification paths log too.
    app.verify(&secret).await;
    app.verify(&rotated_secret).await;
    app.gql(Some(&rotated_secret), "{ viewer { apiKey { id } } }", json!({})).await;

    // Not in any later response.
    let everything = app
        .gql(
            Some(&s.admin_token),
            "{ apiKeys { edges { cursor node { id lastFour description owner { id email } createdBy { id } lastEditedBy { id } } } } }",
            json!({}),
        )
        .await
        .to_string();
    for sec in [&secret, &rotated_secret] {
        assert!(!everything.contains(sec.as_str()));
        assert!(!everything.contains(&sec[3..40]), "not even most of it");
    }

    // Not in the log (captured at debug level, including SQL).
    let log = logs::captured();
    assert!(log.contains("request"), "the log capture works");
    for sec in [&secret, &rotated_secret] {
        assert!(!log.contains(sec.as_str()), "secret found in the log");
        assert!(!log.contains(&sec[15..49]), "secret part found in the log");
    }
    assert!(!log.contains(latchkey_tests::JWT_SECRET));

    // Only the hash in the database; never the secret or its random part.
    let stored = app.db.raw_contents("api_keys").await;
    let hash = latchkey_domain::hashing::sha256_stored(&rotated_secret);
    assert!(stored.contains(&hash), "the current secret's SHA-256 hash is stored");
    for sec in [&secret, &rotated_secret] {
        assert!(!stored.contains(sec.as_str()), "secret stored in clear");
        assert!(!stored.contains(&sec[15..49]), "secret part stored in clear");
    }
    let events = app.db.raw_contents("key_events").await;
    assert!(!events.contains(&rotated_secret[15..49]));
    app.stop().await;
}
