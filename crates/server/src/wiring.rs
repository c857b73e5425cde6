//! Wiring: store, schema, outbox dispatcher and the actix HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{HttpServer, web};
use latchkey_app::{App, KeyVerifier};
use latchkey_domain::{Clock, SystemClock};
use latchkey_graphql::build_schema;
use latchkey_notify::webhooks::HttpWebhookSender;
use latchkey_notify::{Dispatcher, Notifier};
use latchkey_store::{RevocationSignal, Store};
use tokio::sync::{Notify, watch};

use crate::config::ServeConfig;
use crate::context::ServerContext;

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    metrics: Option<(actix_web::dev::ServerHandle, tokio::task::JoinHandle<std::io::Result<()>>)>,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    dispatcher: tokio::task::JoinHandle<()>,
    webhook_dispatcher: tokio::task::JoinHandle<()>,
    usage: tokio::task::JoinHandle<()>,
    expiry: tokio::task::JoinHandle<()>,
    first_uses: Option<tokio::task::JoinHandle<()>>,
    standby: tokio::task::JoinHandle<()>,
    revocations: Option<tokio::task::JoinHandle<()>>,
    stop_dispatcher: watch::Sender<bool>,
    store: Store,
    app: App,
}

impl RunningServer {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops gracefully: end the verification streams, stop accepting,
    /// drain requests, stop the dispatcher.
    pub async fn stop(self) {
        self.app.signals().close();
        self.handle.stop(true).await;
        let _ = self.wait().await;
    }

    /// Waits until the server stops (by itself on SIGINT/SIGTERM, or after
    /// [`RunningServer::stop`]), then stops the metrics listener, the
    /// dispatcher and the background tasks, and closes the pools.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Some((handle, server)) = self.metrics {
            handle.stop(true).await;
            let _ = server.await;
        }
        let _ = self.stop_dispatcher.send(true);
        let _ = self.dispatcher.await;
        let _ = self.webhook_dispatcher.await;
        let _ = self.usage.await;
        let _ = self.expiry.await;
        let _ = self.standby.await;
        if let Some(first_uses) = self.first_uses {
            let _ = first_uses.await;
        }
        if let Some(r) = self.revocations {
            let _ = r.await;
        }
        let _ = self.store.close().await;
        result
    }
}

/// Connects, migrates and starts serving. `notifier` receives notices.
pub async fn start(config: ServeConfig, notifier: Arc<dyn Notifier>) -> anyhow::Result<RunningServer> {
    start_with_clock(config, notifier, Arc::new(SystemClock)).await
}

/// As [`start`], with a chosen clock.
pub async fn start_with_clock(
    config: ServeConfig,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningServer> {
    let store = Store::connect(&config.database_url, &config.store).await?;
    store.migrate().await?;
    let outbox = Arc::new(Notify::new());
    let mut app = App::new(store.clone(), clock.clone(), config.token_key.clone(), &config.verifier, outbox.clone())?;
    let webhooks = &config.webhooks;
    let sender = HttpWebhookSender::new(webhooks.allowed.clone(), webhooks.dispatcher.attempt_timeout)?;
    app = app.with_webhooks(Arc::new(sender), webhooks.allowed.clone());
    if let Some(tenant) = config.stream_operator_tenant {
        app = app.with_operator_tenant(tenant);
    }
    let oidc_provider = match &config.oidc {
        Some(oidc) => {
            let provider = Arc::new(crate::oidc::Provider::new(&oidc.settings.rules.issuer)?);
            app = app.with_oidc(oidc.settings.clone(), provider.clone());
            Some(provider)
        }
        None => None,
    };
    let context = ServerContext {
        schema: build_schema(app.clone()),
        app: app.clone(),
        limits: config.http,
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        github: Arc::new(crate::github::GithubKeys::new(&config.github_keys_url, config.github_keys_min_refresh)?),
        oidc_provider,
        page_sign_in: config.oidc.as_ref().and_then(|oidc| oidc.page.clone()),
    };

    let dispatcher = Dispatcher::new(store.clone(), clock, notifier, config.dispatcher.clone(), outbox)
        .counting_into(app.metrics().mail());
    let (stop_dispatcher, stop_rx) = watch::channel(false);
    let usage = tokio::spawn(flush_usage(app.verifier().clone(), config.usage_flush_interval, stop_rx.clone()));
    let expiry = tokio::spawn(queue_expiry_notices(app.clone(), config.expiry_scan_interval, stop_rx.clone()));
    let standby = tokio::spawn(check_standby(store.clone(), stop_rx.clone()));
    let first_uses = app
        .verifier()
        .take_first_uses()
        .map(|uses| tokio::spawn(end_overlaps_on_first_use(app.clone(), uses, stop_rx.clone())));
    // Listen for other replicas' revocations before serving, so that nothing
    // cached from the first requests is flushed by the first resync.
    let revocations = match app.revocation_listener() {
        Some(mut listener) => {
            if tokio::time::timeout(std::time::Duration::from_secs(5), listener.next()).await.is_err() {
                tracing::warn!("not yet listening for revocations; continuing to try in the background");
            }
            Some(tokio::spawn(follow_revocations(listener, app.clone(), stop_rx.clone())))
        }
        None => None,
    };
    let webhook_dispatcher =
        tokio::spawn(app.clone().run_webhook_dispatcher(config.webhooks.dispatcher.clone(), stop_rx.clone()));
    let dispatcher = tokio::spawn(dispatcher.run(stop_rx));

    let data = web::Data::new(context);
    let metrics = match config.metrics_bind {
        Some(bind) => Some(serve_metrics(bind, data.clone())?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(addr, _, _)| *addr);
    let metrics = metrics.map(|(_, handle, server)| (handle, server));
    let body_read_timeout = config.http.body_read_timeout;
    let cors_origins = Arc::new(config.cors_origins.clone());
    let mut server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(crate::middleware::MAX_BODY_BYTES))
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                crate::middleware::read_body_within(body_read_timeout, req, next)
            }))
            .wrap(actix_web::middleware::from_fn({
                let origins = cors_origins.clone();
                move |req, next| crate::middleware::cors(origins.clone(), req, next)
            }))
            .wrap(actix_web::middleware::from_fn(crate::middleware::log_requests))
            .configure(crate::router::routes)
    })
    .keep_alive(config.http.idle_timeout)
    .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    if config.handle_signals {
        tokio::spawn(close_streams_on_signal(app.clone()));
    } else {
        server = server.disable_signals();
    }
    let server = server.bind(config.bind)?;
    let addr = server.addrs().first().copied().ok_or_else(|| anyhow::anyhow!("bound to no address"))?;
    let server = server.run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    tracing::info!(%addr, "listening");
    if let Some(metrics_addr) = metrics_addr {
        tracing::info!(%metrics_addr, "serving metrics");
    }
    Ok(RunningServer {
        addr,
        metrics_addr,
        metrics,
        handle,
        server,
        dispatcher,
        webhook_dispatcher,
        usage,
        expiry,
        first_uses,
        standby,
        revocations,
        stop_dispatcher,
        store,
        app,
    })
}

/// Ends the verification streams on SIGINT or SIGTERM, beside actix's
/// own graceful stop, which would otherwise wait for them until its timeout.
async fn close_streams_on_signal(app: App) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    app.signals().close();
}

/// The metrics listener: `/metrics` only, one worker, apart from the API so
/// that only the operator's network reaches it. Stopped with the API server.
#[allow(clippy::type_complexity)]
fn serve_metrics(
    bind: SocketAddr,
    data: web::Data<ServerContext>,
) -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let server = HttpServer::new(move || {
        actix_web::App::new().app_data(data.clone()).route("/metrics", web::get().to(crate::probes::metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)
    .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {bind} (LATCHKEY_METRICS_BIND): {e}"))?;
    let addr = server.addrs().first().copied().ok_or_else(|| anyhow::anyhow!("metrics bound to no address"))?;
    let server = server.run();
    let handle = server.handle();
    Ok((addr, handle, tokio::spawn(server)))
}

/// Applies revocations made by every replica to this one's cache and streams (the
/// listener's first connection was awaited before serving: every `Resync`
/// here is a reconnect).
async fn follow_revocations(
    mut listener: latchkey_store::RevocationListener,
    app: App,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            signal = listener.next() => {
                match signal {
                    RevocationSignal::Key(_) => app.metrics().revocation_notice(),
                    RevocationSignal::Resync => app.metrics().listener_reconnect(),
                }
                app.apply_revocation(signal);
            }
            _ = stop.changed() => return,
        }
    }
}

/// Checks the read standby (its lag, what it replayed) every
/// `STANDBY_CHECK_INTERVAL`; returns at once without one.
async fn check_standby(store: Store, mut stop: watch::Receiver<bool>) {
    if store.standby_status().is_none() {
        return;
    }
    loop {
        store.check_standby().await;
        tokio::select! {
            _ = tokio::time::sleep(latchkey_store::STANDBY_CHECK_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Ends the overlap of each key whose new secret was just used for the
/// first time (`endOverlapOnFirstUse`), as the verifier reports them.
async fn end_overlaps_on_first_use(
    app: App,
    mut uses: tokio::sync::mpsc::Receiver<latchkey_app::verify::FirstUse>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first_use = tokio::select! {
            Some(first_use) = uses.recv() => first_use,
            _ = stop.changed() => return,
        };
        if let Err(e) = app.end_overlap_on_first_use(first_use).await {
            tracing::warn!(error = %e, "ending an overlap on the new secret's first use failed; it ends at its deadline");
        }
    }
}

/// Queues due expiry notices, and applies the unused-key rule, every
/// `interval`. Every replica runs this; each notice, warning and disabling
/// happens once (see `App::queue_expiry_notices`, `App::apply_unused_key_rule`).
async fn queue_expiry_notices(app: App, interval: std::time::Duration, mut stop: watch::Receiver<bool>) {
    /// Most notices queued per pass; a larger backlog takes more passes.
    const BATCH: u64 = 500;
    loop {
        match app.queue_expiry_notices(BATCH).await {
            Ok(n) if n > 0 => tracing::info!(notices = n, "expiry notices queued"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "queueing expiry notices failed; will retry"),
        }
        match app.apply_unused_key_rule(BATCH).await {
            Ok(n) if n > 0 => tracing::info!(steps = n, "unused keys warned or disabled"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "applying the unused-key rule failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Writes recorded key use to `last_used_at` every `interval` (or sooner
/// when the recorded uses reach their cap), and once more on shutdown, when
/// it also gives back the credits this replica holds.
async fn flush_usage(verifier: Arc<KeyVerifier>, interval: std::time::Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = verifier.usage_filled() => false,
            _ = stop.changed() => true,
        };
        match verifier.flush_usage().await {
            Ok(n) if n > 0 => tracing::debug!(keys = n, "last use recorded"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "recording last use failed; will retry"),
        }
        if stopping || *stop.borrow() {
            match verifier.give_back_credits().await {
                Ok(n) if n > 0 => tracing::info!(credits = n, "held credits given back"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "giving back held credits failed; they are lost"),
            }
            return;
        }
    }
}
