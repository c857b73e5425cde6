//! Concurrency: parallel generates all land; parallel rotates of one key leave
//! exactly one working secret.

use futures_util::future::join_all;
use latchkey_tests::TestApp;
use serde_json::json;

on_both_backends!(forty_parallel_generates_give_forty_keys, parallel_rotations_leave_exactly_one_working_secret);

async fn forty_parallel_generates_give_forty_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let results = join_all((0..40).map(|i| {
        let app = &app;
        let s = &s;
        async move { app.generate(&s.admin_token, &s.integration, &format!("parallel {i}")).await }
    }))
    .await;
    let mut ids: Vec<String> = results.iter().map(|(id, _, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    let body = app
        .gql(Some(&s.admin_token), "{ apiKeys(first: 100) { totalCount nodes { id description } } }", json!({}))
        .await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 40);
    let mut listed: Vec<String> = body["data"]["apiKeys"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
    // Every secret works.
    for (_, secret, _) in results.iter().take(5) {
        assert_eq!(app.verify(secret).await["valid"], true);
    }
    assert_eq!(app.store.list_events(None, 100).await.unwrap().len(), 40, "one event each");
    app.stop().await;
}

async fn parallel_rotations_leave_exactly_one_working_secret(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, original, _) = app.generate(&s.admin_token, &s.integration, "Hot key").await;
    let q = latchkey_tests::ops::ROTATE;
    let bodies = join_all((0..8).map(|_| app.gql(Some(&s.admin_token), q, json!({ "id": id })))).await;
    let secrets: Vec<String> = bodies
        .iter()
        .map(|b| b["data"]["rotateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{b}")).to_owned())
        .collect();
    let mut working = Vec::new();
    for secret in secrets.iter().chain(std::iter::once(&original)) {
        if app.verify(secret).await["valid"] == true {
            working.push(secret.clone());
        }
    }
    assert_eq!(working.len(), 1, "exactly one working secret");
    let listed = app.gql(Some(&s.admin_token), "{ apiKeys { nodes { lastFour } } }", json!({})).await;
    assert_eq!(listed["data"]["apiKeys"]["nodes"][0]["lastFour"], &working[0][working[0].len() - 4..]);
    assert_eq!(app.store.list_events(None, 100).await.unwrap().len(), 9, "generate + 8 rotations");
    app.stop().await;
}
