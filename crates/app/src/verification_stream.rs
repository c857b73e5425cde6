//! The verification stream: what a service that caches verifications in
//! its own process must drop, as it happens (`GET /v1/verifications/stream`).
//!
//! Every replica keeps the signals it applied to its own cache (from its
//! commits on SQLite, from the `NOTIFY` follower on PostgreSQL) in a ring
//! of the last [`RETAINED_EVENTS`] or [`RETAINED_FOR`], each with an id
//! `<seq>-<unix ms>-<replica>`. A client resuming with `Last-Event-ID`:
//! - from this replica gets what followed its event, if the ring still
//!   holds it;
//! - from another replica gets every signal this one received from
//!   [`RESUME_MARGIN`] before that event's time on (replicas receive each
//!   `NOTIFY` within milliseconds of one another; a signal sent twice is
//!   harmless), if this replica was running then and still holds it;
//! - otherwise `flush`: drop everything, nothing can be proved.
//!
//! A subscriber too slow for the live channel gets `flush` too.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use latchkey_domain::TenantId;
use latchkey_domain::key_signals::KeySignal;
use latchkey_domain::restrictions::{PermissionSet, owner_permissions};
use latchkey_domain::usage::{Granularity, IdempotencyKey, LastUse, UsageOutcome};
use latchkey_store::{ReceiptOutcome, UsageBatch, UsageDelta, UsageReceipt};
use tokio::sync::{broadcast, watch};

use crate::App;
use crate::auth::{Authentication, Principal};
use crate::error::{AppError, AppResult};

/// The most signals a replica keeps for resuming streams.
pub const RETAINED_EVENTS: usize = 10_000;
/// The longest a replica keeps a signal for resuming streams.
pub const RETAINED_FOR: Duration = Duration::minutes(5);
/// How much earlier than another replica this one may receive a signal
/// (`NOTIFY` delivery and clocks, both milliseconds apart): a resume from
/// another replica's event replays from this long before its time.
pub const RESUME_MARGIN: Duration = Duration::seconds(1);
/// How often a stream says it is alive.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
/// Signals a live subscriber may fall behind by before it gets `flush`.
const LIVE_CAPACITY: usize = 4_096;

/// The most keys one usage report names.
pub const MAX_REPORTED_KEYS: usize = 1_000;
/// The most uses of one key one usage report carries.
pub const MAX_REPORTED_USES: u64 = 1_000_000_000;

/// What became of a usage report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReportAnswer {
    /// Keys not counted: unknown, or of a tenant the stream does not carry.
    pub refused: Vec<latchkey_domain::ApiKeyId>,
    /// Whether the report was received before under its idempotency key
    /// (and so not counted again).
    pub replayed: bool,
}

/// What identifies a report's content (SHA-256, hex): a retry under the
/// same idempotency key must carry the same.
fn report_digest(uses: &[ReportedUse]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for reported in uses {
        let last = &reported.last;
        hash.update(reported.key_id.0.as_bytes());
        hash.update(reported.count.to_be_bytes());
        hash.update(last.at.timestamp_micros().to_be_bytes());
        hash.update(last.cloud.map_or("", |c| c.as_str()).as_bytes());
        hash.update([0]);
        hash.update(last.client_address.map(|ip| ip.to_string()).unwrap_or_default().as_bytes());
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}

/// Verifications of a key a client answered from its cache.
#[derive(Clone, Debug)]
pub struct ReportedUse {
    /// The key.
    pub key_id: latchkey_domain::ApiKeyId,
    /// How many.
    pub count: u64,
    /// The last of them.
    pub last: latchkey_domain::usage::LastUse,
}

/// The permission a key needs to open the stream.
pub const STREAM_PERMISSION: &str = "verify:stream";

/// Why a stream must drop everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    /// The replica's follower reconnected: signals may have been missed.
    Resync,
    /// The resume asked for signals this replica no longer holds or never had.
    ResumeTooOld,
    /// The client read too slowly.
    Lagged,
}

impl FlushReason {
    /// The name a client sees.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Resync => "resync",
            FlushReason::ResumeTooOld => "resume_too_old",
            FlushReason::Lagged => "lagged",
        }
    }
}

/// The id of a stream event: unique per replica run, ordered within it,
/// with the time it was received (to resume on another replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId {
    /// Position in this replica's run.
    pub seq: u64,
    /// When this replica received it.
    pub at: DateTime<Utc>,
    /// The replica run.
    pub run: u32,
}

impl EventId {
    /// The text form sent as the SSE `id`.
    pub fn encode(&self) -> String {
        format!("{}-{}-{:08x}", self.seq, self.at.timestamp_millis(), self.run)
    }

    /// Reads [`EventId::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let (Some(seq), Some(at), Some(run), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        Some(EventId {
            seq: seq.parse().ok()?,
            at: DateTime::from_timestamp_millis(at.parse().ok()?)?,
            run: u32::from_str_radix(run, 16).ok()?,
        })
    }
}

/// What a stream sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A key's cached verifications no longer hold.
    Key(EventId, KeySignal),
    /// Drop every cached verification.
    Flush(Option<EventId>, FlushReason),
}

/// Whose keys a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamGrant {
    /// The tenant of the key that opened it; none for every tenant (a key
    /// of the operator's tenant).
    pub tenant: Option<TenantId>,
    /// That key: the stream ends when it is revoked or changed.
    pub key: latchkey_domain::ApiKeyId,
}

impl StreamGrant {
    /// Whether the stream carries `event`.
    pub fn carries(&self, event: &StreamEvent) -> bool {
        match event {
            StreamEvent::Key(_, signal) => self.tenant.is_none_or(|tenant| signal.tenant_id == tenant),
            StreamEvent::Flush(..) => true,
        }
    }
}

/// A new subscriber: what to send first, then the live channel.
#[derive(Debug)]
pub struct Subscription {
    /// Signals since the client's `Last-Event-ID` (or one `flush`).
    pub replay: Vec<StreamEvent>,
    /// Everything published from now on.
    pub live: broadcast::Receiver<StreamEvent>,
    /// Where the stream starts: a client that resumes from it misses
    /// nothing, even if no signal came before it disconnected.
    pub position: EventId,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<StreamEvent>,
    next_seq: u64,
    /// Signals received from then on are all in `events`.
    complete_since: DateTime<Utc>,
}

/// This replica's signals for its streams.
#[derive(Debug)]
pub struct SignalHub {
    run: u32,
    ring: Mutex<Ring>,
    live: broadcast::Sender<StreamEvent>,
    closing: watch::Sender<bool>,
}

impl SignalHub {
    /// A hub for a replica started at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        SignalHub {
            run: rand::random(),
            ring: Mutex::new(Ring { events: VecDeque::new(), next_seq: 1, complete_since: now }),
            live: broadcast::channel(LIVE_CAPACITY).0,
            closing: watch::channel(false).0,
        }
    }

    /// Ends every stream (the server is stopping: clients reconnect to
    /// another replica and resume there).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Changes when the streams must end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Sends `signal` (or, for `None`, a `flush` after a resync) to every
    /// stream, and keeps it for resumes.
    pub fn publish(&self, signal: Option<KeySignal>, now: DateTime<Utc>) {
        let Ok(mut ring) = self.ring.lock() else { return };
        let id = EventId { seq: ring.next_seq, at: now, run: self.run };
        ring.next_seq += 1;
        let event = match signal {
            Some(signal) => StreamEvent::Key(id, signal),
            None => StreamEvent::Flush(Some(id), FlushReason::Resync),
        };
        ring.events.push_back(event);
        while ring.events.len() > RETAINED_EVENTS
            || ring.events.front().is_some_and(|e| event_at(e) < now - RETAINED_FOR)
        {
            if let Some(dropped) = ring.events.pop_front() {
                // Signals at this time or before may be gone.
                ring.complete_since = event_at(&dropped) + Duration::milliseconds(1);
            }
        }
        // No subscriber is not an error.
        let _ = self.live.send(event);
    }

    /// Subscribes a stream resuming after `last_event_id` (none: a new
    /// client, which has nothing cached yet). The replay and the live
    /// channel are taken together: nothing falls between them.
    pub fn subscribe(&self, last_event_id: Option<&str>, now: DateTime<Utc>) -> Subscription {
        let ring = match self.ring.lock() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        let live = self.live.subscribe();
        let too_old = || vec![StreamEvent::Flush(None, FlushReason::ResumeTooOld)];
        let replay = match last_event_id {
            None => Vec::new(),
            Some(text) => match EventId::decode(text) {
                None => too_old(),
                Some(last) if last.run == self.run => {
                    let oldest = ring.events.front().map_or(ring.next_seq, event_seq);
                    if last.seq + 1 < oldest || last.seq >= ring.next_seq {
                        too_old()
                    } else {
                        ring.events.iter().filter(|e| event_seq(e) > last.seq).copied().collect()
                    }
                }
                Some(last) => {
                    let since = last.at - RESUME_MARGIN;
                    if since < ring.complete_since || last.at > now + RESUME_MARGIN {
                        too_old()
                    } else {
                        ring.events.iter().filter(|e| event_at(e) >= since).copied().collect()
                    }
                }
            },
        };
        let position = EventId { seq: ring.next_seq - 1, at: now, run: self.run };
        Subscription { replay, live, position }
    }
}

fn event_id(event: &StreamEvent) -> Option<EventId> {
    match event {
        StreamEvent::Key(id, _) => Some(*id),
        StreamEvent::Flush(id, _) => *id,
    }
}

fn event_seq(event: &StreamEvent) -> u64 {
    event_id(event).map_or(0, |id| id.seq)
}

fn event_at(event: &StreamEvent) -> DateTime<Utc> {
    event_id(event).map_or(DateTime::<Utc>::MIN_UTC, |id| id.at)
}

impl App {
    /// The verification stream for the caller: `UNAUTHENTICATED` without a
    /// key, `FORBIDDEN` for an admin token or a key without the
    /// `verify:stream` permission. A stream carries its key's tenant only,
    /// or every tenant for a key of the operator's tenant.
    pub fn verification_stream(&self, auth: &Authentication) -> AppResult<StreamGrant> {
        match auth.principal()? {
            Principal::Integration { key, tenant } => {
                let wanted = PermissionSet::parse([STREAM_PERMISSION])
                    .map_err(|_| AppError::internal(&"no `verify:stream` permission"))?;
                let may = key.key.restrictions.effective_permissions(owner_permissions(key.owner.role));
                if !may.contains_all(wanted) {
                    return Err(AppError::Forbidden(
                        "This API key may not read the verification stream: it lacks the `verify:stream` permission."
                            .into(),
                    ));
                }
                let every_tenant = self.operator_tenant == Some(tenant.id);
                Ok(StreamGrant { tenant: (!every_tenant).then_some(tenant.id), key: key.key.id })
            }
            Principal::Admin { .. } => Err(AppError::Forbidden(
                "The verification stream is for a service's API key, not an admin token.".into(),
            )),
        }
    }

    /// Counts what a client answered from its own cache since its last
    /// report (`POST /v1/verifications/usage`, with the stream's key, so
    /// the same gate and scope): usage and "last used" stay true for keys
    /// verified in process. Keys unknown or of another tenant are not
    /// counted; their ids are returned. A report at most
    /// [`MAX_REPORTED_KEYS`] keys, each at most [`MAX_REPORTED_USES`].
    ///
    /// The uses are written before the answer (an answered report is
    /// stored). Under an idempotency key, a report received before with
    /// the same key from the same stream key is not counted again (for
    /// [`latchkey_domain::usage::USAGE_RECEIPT_RETENTION_HOURS`]); the same
    /// key with another report is refused.
    pub async fn report_cached_uses(
        &self,
        auth: &Authentication,
        idempotency_key: Option<IdempotencyKey>,
        uses: Vec<ReportedUse>,
    ) -> AppResult<UsageReportAnswer> {
        let grant = self.verification_stream(auth)?;
        if uses.len() > MAX_REPORTED_KEYS || uses.iter().any(|u| u.count == 0 || u.count > MAX_REPORTED_USES) {
            return Err(AppError::BadUserInput(format!(
                "A report names at most {MAX_REPORTED_KEYS} keys, each with 1 to {MAX_REPORTED_USES} uses."
            )));
        }
        let digest = report_digest(&uses);
        let ids: Vec<_> = uses.iter().map(|u| u.key_id).collect();
        let tenants: std::collections::HashMap<_, _> = self.store.tenants_of_keys(&ids).await?.into_iter().collect();
        let now = self.clock.now();
        let mut refused = Vec::new();
        let mut batch = UsageBatch::default();
        for reported in uses {
            match tenants.get(&reported.key_id) {
                Some(&tenant) if grant.tenant.is_none_or(|t| t == tenant) => {
                    // A client's clock ahead of ours does not make a use from the future.
                    let last = LastUse { at: reported.last.at.min(now), ..reported.last };
                    batch.counts.push(UsageDelta {
                        key_id: reported.key_id,
                        tenant_id: tenant,
                        hour: Granularity::Hour.bucket_of(last.at),
                        outcome: UsageOutcome::Valid,
                        count: reported.count,
                    });
                    batch.last_uses.push((reported.key_id, last));
                }
                _ => refused.push(reported.key_id),
            }
        }
        let Some(idempotency_key) = idempotency_key else {
            self.store.record_usage(&batch).await?;
            return Ok(UsageReportAnswer { refused, replayed: false });
        };
        let receipt = UsageReceipt {
            reporter: grant.key,
            idempotency_key: idempotency_key.as_str().to_owned(),
            digest: digest.clone(),
            received_at: now,
        };
        match self.store.record_usage_once(&receipt, &batch).await? {
            ReceiptOutcome::Recorded => Ok(UsageReportAnswer { refused, replayed: false }),
            ReceiptOutcome::Seen { digest: Some(before) } if before != digest => Err(AppError::BadUserInput(
                "This `Idempotency-Key` was used for a different report: use a new key for each report.".into(),
            )),
            // The same report (or one whose receipt retention just dropped): counted before.
            ReceiptOutcome::Seen { .. } => Ok(UsageReportAnswer { refused, replayed: true }),
        }
    }

    /// This replica's signals for verification streams.
    pub fn signals(&self) -> &SignalHub {
        &self.signals
    }
}

#[cfg(test)]
mod tests {
    use latchkey_domain::key_signals::KeySignalKind;
    use latchkey_domain::{ApiKeyId, TenantId};

    use super::*;

    fn signal(n: u128) -> KeySignal {
        KeySignal {
            key_id: ApiKeyId(uuid::Uuid::from_u128(n)),
            tenant_id: TenantId(uuid::Uuid::from_u128(7)),
            kind: KeySignalKind::Revoked,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn id_of(event: &StreamEvent) -> String {
        event_id(event).map(|id| id.encode()).unwrap_or_default()
    }

    fn keys(events: &[StreamEvent]) -> Vec<u128> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Key(_, s) => Some(s.key_id.0.as_u128()),
                StreamEvent::Flush(..) => None,
            })
            .collect()
    }

    #[test]
    fn event_ids_read_back_and_garbage_is_refused() {
        let id = EventId { seq: 42, at: at(3), run: 0xdead_beef };
        assert_eq!(EventId::decode(&id.encode()), Some(id));
        for garbage in ["", "1-2", "x-1-00", "1-2-3-4", "1-2-zz"] {
            assert_eq!(EventId::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn a_resume_on_the_same_replica_gets_what_followed() {
        let hub = SignalHub::new(at(0));
        let mut live = hub.subscribe(None, at(0));
        for n in 1..=3 {
            hub.publish(Some(signal(n)), at(n as i64));
        }
        let first = live.live.try_recv().ok();
        let first = first.as_ref().map(id_of).unwrap_or_default();
        let resumed = hub.subscribe(Some(&first), at(4));
        assert_eq!(keys(&resumed.replay), [2, 3]);
        assert!(hub.subscribe(None, at(4)).replay.is_empty(), "a new client has nothing to drop");
    }

    #[test]
    fn a_resume_on_another_replica_replays_from_a_margin_before() {
        let hub = SignalHub::new(at(0));
        for n in 1..=5 {
            hub.publish(Some(signal(n)), at(10 * n as i64));
        }
        let foreign = EventId { seq: 1, at: at(31), run: 1 }.encode();
        assert_eq!(keys(&hub.subscribe(Some(&foreign), at(60)).replay), [3, 4, 5]);
        let before_start = EventId { seq: 1, at: at(-60), run: 1 }.encode();
        assert_eq!(
            hub.subscribe(Some(&before_start), at(60)).replay,
            [StreamEvent::Flush(None, FlushReason::ResumeTooOld)]
        );
    }

    #[test]
    fn a_resume_past_what_is_kept_is_a_flush() {
        let hub = SignalHub::new(at(0));
        hub.publish(Some(signal(1)), at(1));
        hub.publish(Some(signal(2)), at(2));
        let saw_first = EventId { seq: 1, at: at(1), run: hub.run }.encode();
        assert_eq!(keys(&hub.subscribe(Some(&saw_first), at(3)).replay), [2]);
        // Ten minutes on, both have aged out: the second is lost to that client.
        hub.publish(Some(signal(3)), at(601));
        let resumed = hub.subscribe(Some(&saw_first), at(601));
        assert_eq!(resumed.replay, [StreamEvent::Flush(None, FlushReason::ResumeTooOld)]);
        let saw_second = EventId { seq: 2, at: at(2), run: hub.run }.encode();
        assert_eq!(keys(&hub.subscribe(Some(&saw_second), at(601)).replay), [3], "nothing after it was lost");
        assert!(matches!(hub.subscribe(Some("nonsense"), at(601)).replay[..], [StreamEvent::Flush(None, _)]));
    }

    #[test]
    fn a_stream_carries_its_tenant_and_every_flush() {
        let grant =
            StreamGrant { tenant: Some(TenantId(uuid::Uuid::from_u128(7))), key: ApiKeyId(uuid::Uuid::from_u128(1)) };
        let id = EventId { seq: 1, at: at(0), run: 1 };
        assert!(grant.carries(&StreamEvent::Key(id, signal(2))));
        let other = KeySignal { tenant_id: TenantId(uuid::Uuid::from_u128(8)), ..signal(2) };
        assert!(!grant.carries(&StreamEvent::Key(id, other)));
        assert!(grant.carries(&StreamEvent::Flush(None, FlushReason::Lagged)));
        let operator = StreamGrant { tenant: None, ..grant };
        assert!(operator.carries(&StreamEvent::Key(id, other)), "a key of the operator's tenant reads every tenant");
    }
}
