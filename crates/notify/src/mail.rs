//! Owner mail: composing the message for a notice, and the transports that
//! carry it (SMTP, or `.eml` files in a folder when no SMTP server is set).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use latchkey_domain::{API_KEYS_PAGE_PATH, Notice, NoticeKind, Suspension, WEBHOOKS_PAGE_PATH};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{DeliveryError, DeliveryFuture, Notifier};

/// The sender used when none is configured.
pub const DEFAULT_FROM: &str = "Latchkey <no-reply@localhost>";

/// Mail configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// `LATCHKEY_MAIL_FROM` is not a mailbox.
    #[error("LATCHKEY_MAIL_FROM is invalid: {0}")]
    From(String),
    /// `LATCHKEY_SMTP_URL` cannot be used.
    #[error("LATCHKEY_SMTP_URL is invalid: {0}")]
    SmtpUrl(String),
    /// The mail folder cannot be created.
    #[error("the mail folder {0} cannot be created: {1}")]
    Directory(PathBuf, String),
}

/// What every message shares.
#[derive(Clone, Debug)]
pub struct MailSettings {
    from: Mailbox,
    console_url: String,
}

impl MailSettings {
    /// `from` is a mailbox (`Name <addr>` or `addr`); `console_url` the admin
    /// console's base URL.
    pub fn new(from: &str, console_url: &str) -> Result<Self, MailConfigError> {
        let from: Mailbox =
            from.parse().map_err(|e: lettre::address::AddressError| MailConfigError::From(e.to_string()))?;
        Ok(MailSettings { from, console_url: console_url.trim_end_matches('/').to_owned() })
    }

    /// The link to the API key page that every message carries.
    pub fn api_keys_page(&self) -> String {
        format!("{}{API_KEYS_PAGE_PATH}", self.console_url)
    }
}

/// Replaces control characters (a defence in depth: descriptions are
/// validated, names may come from elsewhere) so no text can break a line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as mail shows it: UTC, ISO 8601.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the owner is told: the subject's verb phrase, the opening sentence
/// (after "Your API key "…" (ending in …)") and what it means for them.
fn wording(event: &Notice) -> (String, String, String) {
    let word = event.kind.as_str();
    let done_by = || format!("was {word} by {} at {}", one_line(&event.actor_name), timestamp(event.occurred_at));
    let expiry = event.key_expires_at.map_or_else(|| timestamp(event.occurred_at), timestamp);
    match event.kind {
        NoticeKind::Generated => (
            format!("was {word}"),
            done_by(),
            "The secret was shown once to the person who generated it; Latchkey cannot show it again.".into(),
        ),
        NoticeKind::Rotated => (
            format!("was {word}"),
            done_by(),
            match event.previous_secret_expires_at {
                Some(until) => format!(
                    "The previous secret keeps working until {}; after that only the new secret works. \
                     Update your integrations before then.",
                    timestamp(until)
                ),
                None => "The previous secret stopped working immediately. Integrations must use the new secret.".into(),
            },
        ),
        NoticeKind::Imported => (
            format!("was {word}"),
            format!("was {word} from another system into Latchkey at {}", timestamp(event.occurred_at)),
            "It keeps working with the secret it had there. You can now see it on the API keys page, \
             and rotate, restrict or delete it there."
                .into(),
        ),
        NoticeKind::Deleted => (
            format!("was {word}"),
            done_by(),
            "The key no longer works. Integrations using it can no longer authenticate.".into(),
        ),
        NoticeKind::Disabled => (
            format!("was {word}"),
            done_by(),
            "The key does not work until an administrator enables it again; its secret is unchanged.".into(),
        ),
        NoticeKind::Enabled => {
            (format!("was {word}"), done_by(), "The key works again, with the same secret as before.".into())
        }
        NoticeKind::RestrictionsChanged => {
            let (before, after) = event.before_after.clone().unwrap_or_default();
            (
                "had its restrictions changed".into(),
                format!(
                    "had its restrictions changed by {} at {}",
                    one_line(&event.actor_name),
                    timestamp(event.occurred_at)
                ),
                format!(
                    "Before: {}. Now: {}. Requests the key may no longer make are refused from now on.",
                    one_line(&before),
                    one_line(&after)
                ),
            )
        }
        NoticeKind::LimitsChanged => {
            let (before, after) = event.before_after.clone().unwrap_or_default();
            (
                "had its limits changed".into(),
                format!(
                    "had its rate limits or credits changed by {} at {}",
                    one_line(&event.actor_name),
                    timestamp(event.occurred_at)
                ),
                format!(
                    "Before: {}. Now: {}. Requests over a limit, or without enough credits, are refused.",
                    one_line(&before),
                    one_line(&after)
                ),
            )
        }
        NoticeKind::CreditsLow => (
            "is running low on credits".into(),
            format!("has less than 10 % of its credits left at {}", timestamp(event.occurred_at)),
            "When they are spent, its requests are refused until they are refilled or an administrator adds credits."
                .into(),
        ),
        NoticeKind::CreditsExhausted => (
            "has no credits left".into(),
            format!("spent its last credits at {}", timestamp(event.occurred_at)),
            "Its requests are refused until its credits are refilled or an administrator adds credits.".into(),
        ),
        NoticeKind::Leaked => {
            let leak = event.leak.clone().unwrap_or_else(|| latchkey_domain::LeakReport {
                reporter: event.actor_name.clone(),
                url: None,
                source: None,
                revoked: false,
            });
            let place = match (&leak.url, &leak.source) {
                (Some(url), Some(source)) => format!(" at {} ({})", one_line(url), one_line(source)),
                (Some(url), None) => format!(" at {}", one_line(url)),
                (None, Some(source)) => format!(" in {}", one_line(source)),
                (None, None) => String::new(),
            };
            (
                "was found exposed".into(),
                format!(
                    "was found exposed{place}, reported by {} at {}",
                    one_line(&leak.reporter),
                    timestamp(event.occurred_at)
                ),
                if leak.revoked {
                    "It was revoked at once and no longer works. Rotate it to issue a new secret for the \
                     integration, and remove the exposed secret from where it was found."
                        .into()
                } else {
                    "It still works: your organisation only asks to be told. Rotate it now, and remove the \
                     exposed secret from where it was found."
                        .into()
                },
            )
        }
        NoticeKind::OwnerChanged => {
            let (before, after) = event.owner_change.clone().unwrap_or_default();
            (
                "has a new owner".into(),
                format!(
                    "was given by {} to {} by {} at {}",
                    one_line(&before),
                    one_line(&after),
                    one_line(&event.actor_name),
                    timestamp(event.occurred_at)
                ),
                format!(
                    "Its secret is unchanged: integrations using it keep working. From now on {} is told of \
                     every change to it.",
                    one_line(&after)
                ),
            )
        }
        // Composed by `suspension_message`; this is its one-key fallback.
        NoticeKind::KeysSuspended => (
            "was suspended".into(),
            format!("was suspended when its owner could no longer own keys ({})", one_line(&event.actor_name)),
            "Transfer it to another owner to make it work again.".into(),
        ),
        NoticeKind::Expiring => (
            format!("expires at {expiry}"),
            format!("expires at {expiry}"),
            "After that it stops working. To keep it working, ask an administrator to change its expiry or rotate it."
                .into(),
        ),
        NoticeKind::PolicyChanged => {
            let (before, after) = event.before_after.clone().unwrap_or_default();
            (
                "changed".into(),
                format!("was changed by {} at {}", one_line(&event.actor_name), timestamp(event.occurred_at)),
                format!(
                    "Before: {}. Now: {}. New and changed keys must keep these rules; keys that break them \
                     keep working and are marked on the API keys page.",
                    one_line(&before),
                    one_line(&after)
                ),
            )
        }
        // Composed by `webhook_disabled_message`.
        NoticeKind::WebhookDisabled => {
            ("was disabled".into(), "was disabled".into(), "Its endpoint failed for 5 days.".into())
        }
        NoticeKind::UnusedWarning => {
            let (since, until) = event.before_after.clone().unwrap_or_default();
            (
                "will be disabled for going unused".into(),
                format!("has not been used since {}", one_line(&since)),
                format!(
                    "Your organisation's key policy switches off keys that go unused, so it will be disabled at \
                     {}. Using it before then keeps it working; an administrator can also enable it again later.",
                    one_line(&until)
                ),
            )
        }
        NoticeKind::DisabledUnused => {
            let (since, days) = event.before_after.clone().unwrap_or_default();
            (
                "was disabled for going unused".into(),
                format!(
                    "was disabled at {} because it was not used since {} (your organisation's key policy \
                     switches off keys unused for {} days)",
                    timestamp(event.occurred_at),
                    one_line(&since),
                    one_line(&days)
                ),
                "The key does not work until an administrator enables it again; its secret is unchanged.".into(),
            )
        }
        // Composed by `keys_break_policy_message`; this is its one-key fallback.
        NoticeKind::KeysBreakPolicy => (
            "breaks the new key policy".into(),
            "breaks your organisation's new key policy".into(),
            "It keeps working. Rotate it, or change it, to bring it within the rules.".into(),
        ),
        NoticeKind::Expired => (
            format!("expired at {expiry}"),
            format!("expired at {expiry}"),
            "It no longer works. An administrator can rotate it, or change its expiry, to make it work again.".into(),
        ),
    }
}

/// The Message-ID of the message for an event: stable, so that a redelivery
/// (at-least-once) is recognisable downstream.
pub fn message_id(event: &Notice, settings: &MailSettings) -> String {
    format!("<key-event-{}@{}>", event.id, settings.from.email.domain())
}

/// Composes the owner's message for `event`. Never contains a secret: key
/// events do not carry one.
pub fn compose(event: &Notice, settings: &MailSettings) -> Result<Message, DeliveryError> {
    let to: Mailbox = format!("{} <{}>", one_line(&event.owner_name).replace(['<', '>', '"'], ""), event.owner_email)
        .parse()
        .or_else(|_| event.owner_email.parse())
        .map_err(|e: lettre::address::AddressError| {
            DeliveryError::Permanent(format!("the owner's address cannot be used: {e}"))
        })?;
    if let (NoticeKind::KeysBreakPolicy, Some(keys)) = (event.kind, &event.suspension) {
        let (subject, text, html) = keys_break_policy_message(event, keys, settings);
        return build(event, settings, to, subject, text, html);
    }
    if let Some(suspension) = &event.suspension {
        let (subject, text, html) = suspension_message(event, suspension, settings);
        return build(event, settings, to, subject, text, html);
    }
    if event.kind == NoticeKind::PolicyChanged {
        let (subject, text, html) = policy_changed_message(event, settings);
        return build(event, settings, to, subject, text, html);
    }
    if event.kind == NoticeKind::WebhookDisabled {
        let (subject, text, html) = webhook_disabled_message(event, settings);
        return build(event, settings, to, subject, text, html);
    }
    let description = one_line(&event.key_description);
    let owner = one_line(&event.owner_name);
    let link = settings.api_keys_page();
    let last_four = &event.key_last_four;
    let (headline, what_happened, consequence) = wording(event);
    let subject = format!("Your API key \"{description}\" {headline}");

    let text = format!(
        "Hello {owner},\n\n\
         Your API key \"{description}\" (ending in {last_four}) {what_happened}.\n\n\
         {consequence}\n\n\
         Manage your API keys: {link}\n\n\
         If you did not expect this, contact an administrator of your organisation.\n",
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <p>Hello {owner},</p>\
         <p>Your API key <strong>{description}</strong> (ending in <code>{last_four}</code>) {what_happened}.</p>\
         <p>{consequence}</p>\
         <p><a href=\"{link}\">Manage your API keys</a></p>\
         <p style=\"color: #555\">If you did not expect this, contact an administrator of your organisation.</p>\
         </body></html>",
        owner = escape_html(&owner),
        description = escape_html(&description),
        last_four = escape_html(last_four),
        what_happened = escape_html(&what_happened),
        consequence = escape_html(&consequence),
        link = escape_html(&link),
    );
    build(event, settings, to, subject, text, html)
}

/// The admins' notice of a deactivation: whose keys were suspended, which,
/// and a link to the API keys page filtered to that owner.
fn suspension_message(event: &Notice, suspension: &Suspension, settings: &MailSettings) -> (String, String, String) {
    let admin = one_line(&event.owner_name);
    let user = one_line(&suspension.user_name);
    let count = suspension.keys.len();
    let plural = if count == 1 { "" } else { "s" };
    let subject = format!("{count} API key{plural} of {user} suspended");
    let link = format!("{}?owner={}", settings.api_keys_page(), suspension.user_id);
    let what = format!(
        "{user} may no longer own API keys (deactivated, or given a role that cannot own keys, by {} at {}), \
         so the API key{plural} they own stopped working (their integrations get OWNER_INACTIVE):",
        one_line(&event.actor_name),
        timestamp(event.occurred_at)
    );
    let keys: Vec<String> = suspension
        .keys
        .iter()
        .map(|(last_four, description)| format!("\"{}\" (ending in {last_four})", one_line(description)))
        .collect();
    let remedy = "Transfer them to another owner to make them work again with the same secret, or reactivate the user.";
    let text = format!(
        "Hello {admin},\n\n{what}\n\n{}\n\n{remedy}\n\nReview the suspended keys: {link}\n",
        keys.iter().map(|k| format!("  - {k}")).collect::<Vec<_>>().join("\n")
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <p>Hello {admin},</p><p>{what}</p><ul>{items}</ul><p>{remedy}</p>\
         <p><a href=\"{link}\">Review the suspended keys</a></p></body></html>",
        admin = escape_html(&admin),
        what = escape_html(&what),
        items = keys.iter().map(|k| format!("<li>{}</li>", escape_html(k))).collect::<String>(),
        remedy = escape_html(remedy),
        link = escape_html(&link),
    );
    (subject, text, html)
}

/// The owner's notice that keys they own break a new key policy: which,
/// the rules, and that nothing stopped.
fn keys_break_policy_message(event: &Notice, owned: &Suspension, settings: &MailSettings) -> (String, String, String) {
    let owner = one_line(&event.owner_name);
    let (count, rules) = event.before_after.clone().unwrap_or_default();
    let count: usize = count.parse().unwrap_or(owned.keys.len()).max(owned.keys.len());
    let plural = if count == 1 { "" } else { "s" };
    let subject = format!("{count} of your API keys break{} the new key policy", if count == 1 { "s" } else { "" });
    let link = format!("{}?owner={}", settings.api_keys_page(), owned.user_id);
    let what = format!(
        "Your organisation's API key policy was changed by {} at {}. Its rules: {}. The API key{plural} \
         below break{} them:",
        one_line(&event.actor_name),
        timestamp(event.occurred_at),
        one_line(&rules),
        if count == 1 { "s" } else { "" }
    );
    let mut keys: Vec<String> = owned
        .keys
        .iter()
        .map(|(last_four, description)| format!("\"{}\" (ending in {last_four})", one_line(description)))
        .collect();
    if count > owned.keys.len() {
        keys.push(format!("and {} more", count - owned.keys.len()));
    }
    let remedy = "They keep working. Rotate or change them to bring them within the rules; new and changed keys \
                  must keep them.";
    let text = format!(
        "Hello {owner},\n\n{what}\n\n{}\n\n{remedy}\n\nReview your API keys: {link}\n",
        keys.iter().map(|k| format!("  - {k}")).collect::<Vec<_>>().join("\n")
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <p>Hello {owner},</p><p>{what}</p><ul>{items}</ul><p>{remedy}</p>\
         <p><a href=\"{link}\">Review your API keys</a></p></body></html>",
        owner = escape_html(&owner),
        what = escape_html(&what),
        items = keys.iter().map(|k| format!("<li>{}</li>", escape_html(k))).collect::<String>(),
        remedy = escape_html(remedy),
        link = escape_html(&link),
    );
    (subject, text, html)
}

/// The admins' notice that the organisation's key policy changed.
fn policy_changed_message(event: &Notice, settings: &MailSettings) -> (String, String, String) {
    let admin = one_line(&event.owner_name);
    let (_, what_happened, consequence) = wording(event);
    let link = settings.api_keys_page();
    let subject = "Your organisation's API key policy changed".to_owned();
    let what = format!("Your organisation's API key policy {what_happened}.");
    let text = format!("Hello {admin},\n\n{what}\n\n{consequence}\n\nReview your API keys: {link}\n");
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <p>Hello {admin},</p><p>{what}</p><p>{consequence}</p>\
         <p><a href=\"{link}\">Review your API keys</a></p></body></html>",
        admin = escape_html(&admin),
        what = escape_html(&what),
        consequence = escape_html(&consequence),
        link = escape_html(&link),
    );
    (subject, text, html)
}

/// The admins' notice that a webhook endpoint was switched off: which, since
/// when it failed, its last error, and where to switch it on again.
fn webhook_disabled_message(event: &Notice, settings: &MailSettings) -> (String, String, String) {
    let admin = one_line(&event.owner_name);
    let url = one_line(&event.key_description);
    let (since, reason) = event.before_after.clone().unwrap_or_default();
    let link = format!("{}{WEBHOOKS_PAGE_PATH}", settings.console_url);
    let subject = format!("Webhook endpoint {url} was disabled");
    let what = format!(
        "Every delivery to the webhook endpoint {url} has failed since {}, so Latchkey disabled it at {}. \
         The last error: {}.",
        one_line(&since),
        timestamp(event.occurred_at),
        one_line(&reason)
    );
    let remedy = "Events are kept for it, undelivered: fix the receiver, then enable the endpoint again \
                  and redeliver what it missed from its delivery log.";
    let text = format!("Hello {admin},\n\n{what}\n\n{remedy}\n\nManage webhooks: {link}\n");
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <p>Hello {admin},</p><p>{what}</p><p>{remedy}</p>\
         <p><a href=\"{link}\">Manage webhooks</a></p></body></html>",
        admin = escape_html(&admin),
        what = escape_html(&what),
        remedy = escape_html(remedy),
        link = escape_html(&link),
    );
    (subject, text, html)
}

/// The message for `event`, to `to`, as text and HTML alternatives.
fn build(
    event: &Notice,
    settings: &MailSettings,
    to: Mailbox,
    subject: String,
    text: String,
    html: String,
) -> Result<Message, DeliveryError> {
    Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id(event, settings)))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
        )
        .map_err(|e| DeliveryError::Permanent(format!("the message cannot be built: {e}")))
}

/// How messages leave.
#[derive(Clone, Debug)]
pub enum MailTransport {
    /// A real SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a folder (the embedded default: mail does not leave the machine).
    Directory(PathBuf),
}

impl MailTransport {
    /// SMTP from a URL: `smtp://host:port` (plain, for a local relay),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`.
    pub fn smtp(url: &str, timeout: Duration) -> Result<Self, MailConfigError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailConfigError::SmtpUrl(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(MailTransport::Smtp(transport))
    }

    /// `.eml` files under `dir` (created if missing).
    pub fn directory(dir: &Path) -> Result<Self, MailConfigError> {
        std::fs::create_dir_all(dir).map_err(|e| MailConfigError::Directory(dir.to_owned(), e.to_string()))?;
        Ok(MailTransport::Directory(dir.to_owned()))
    }
}

/// Mails notices to their owners.
#[derive(Clone, Debug)]
pub struct MailNotifier {
    transport: MailTransport,
    settings: MailSettings,
}

impl MailNotifier {
    /// A notifier sending through `transport`.
    pub fn new(transport: MailTransport, settings: MailSettings) -> Self {
        MailNotifier { transport, settings }
    }

    async fn send(&self, event: &Notice) -> Result<(), DeliveryError> {
        let message = compose(event, &self.settings)?;
        match &self.transport {
            MailTransport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
                Err(e) => Err(DeliveryError::Transient(e.to_string())),
            },
            MailTransport::Directory(dir) => {
                // Named by event id: a redelivery overwrites rather than duplicates.
                let path = dir.join(format!("{}.eml", event.id));
                let partial = dir.join(format!(".{}.eml.partial", event.id));
                let bytes = message.formatted();
                tokio::fs::write(&partial, bytes).await.map_err(|e| DeliveryError::Transient(e.to_string()))?;
                tokio::fs::rename(&partial, &path).await.map_err(|e| DeliveryError::Transient(e.to_string()))?;
                tracing::info!(path = %path.display(), event = %event.id, "mail written to a file (no SMTP server configured)");
                Ok(())
            }
        }
    }
}

impl Notifier for MailNotifier {
    fn deliver<'a>(&'a self, event: &'a Notice) -> DeliveryFuture<'a> {
        Box::pin(self.send(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use latchkey_domain::{ApiKeyId, NoticeId, TenantId, UserId};
    use mail_parser::MessageParser;
    use uuid::Uuid;

    fn event(description: &str, actor: &str) -> Notice {
        Notice {
            id: NoticeId(Uuid::from_u128(42)),
            kind: NoticeKind::Rotated,
            tenant_id: TenantId(Uuid::from_u128(1)),
            key_id: ApiKeyId(Uuid::from_u128(2)),
            key_description: description.into(),
            key_last_four: "AbC9".into(),
            owner_id: UserId(Uuid::from_u128(3)),
            owner_email: "owner@acme.example".into(),
            owner_name: "Olive Owner".into(),
            actor_id: UserId(Uuid::from_u128(4)),
            actor_name: actor.into(),
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
            key_expires_at: None,
            previous_secret_expires_at: None,
            before_after: None,
            leak: None,
            owner_change: None,
            suspension: None,
        }
    }

    #[test]
    fn admin_notices_about_no_key_name_what_changed() {
        let policy = Notice {
            kind: NoticeKind::PolicyChanged,
            key_id: ApiKeyId(Uuid::nil()),
            before_after: Some(("no rules".into(), "keys expire within 30 days".into())),
            ..event("key policy", "Ada Admin")
        };
        let (subject, text) = text_of(&policy);
        assert_eq!(subject, "Your organisation's API key policy changed");
        assert!(
            text.contains("was changed by Ada Admin") && text.contains("Now: keys expire within 30 days"),
            "{text}"
        );
        let disabled = Notice {
            kind: NoticeKind::WebhookDisabled,
            before_after: Some(("2026-03-01T00:00:00Z".into(), "the receiver answered HTTP 503".into())),
            ..event("https://hooks.example.com/in", "Latchkey")
        };
        let (subject, text) = text_of(&disabled);
        assert_eq!(subject, "Webhook endpoint https://hooks.example.com/in was disabled");
        assert!(text.contains("HTTP 503") && text.contains("/settings/integrations/webhooks"), "{text}");
        assert!(!text.contains("AbC9"), "no key: {text}");
    }

    fn text_of(event: &Notice) -> (String, String) {
        let raw = compose(event, &settings()).unwrap().formatted();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        (parsed.subject().unwrap().to_owned(), parsed.body_text(0).unwrap().into_owned())
    }

    #[test]
    fn the_admins_are_told_whose_keys_were_suspended_and_where_to_transfer_them() {
        let notice = Notice {
            kind: NoticeKind::KeysSuspended,
            suspension: Some(Suspension {
                user_id: UserId(Uuid::from_u128(9)),
                user_name: "Sam <Leaver>".into(),
                keys: vec![("AbC9".into(), "Sync".into()), ("XyZ1".into(), "Reports & exports".into())],
            }),
            ..event("Sync", "Ada Admin")
        };
        let raw = compose(&notice, &settings()).unwrap().formatted();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject().unwrap(), "2 API keys of Sam <Leaver> suspended");
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("Sam <Leaver> may no longer own API keys (deactivated, or given a role that cannot own keys, by Ada Admin at 2026-03-04T05:06:07Z)"), "{text}");
        let items: Vec<&str> = text.lines().filter(|l| l.starts_with("  - ")).collect();
        assert_eq!(items, ["  - \"Sync\" (ending in AbC9)", "  - \"Reports & exports\" (ending in XyZ1)"], "{text}");
        assert!(text.contains("settings/integrations/api?owner=00000000-0000-0000-0000-000000000009"), "{text}");
        let html = parsed.body_html(0).unwrap();
        assert!(html.contains("Sam &lt;Leaver&gt;") && html.contains("Reports &amp; exports"), "{html}");
    }

    #[test]
    fn a_transfer_mail_names_both_owners_and_who_moved_it() {
        let moved = Notice {
            kind: NoticeKind::OwnerChanged,
            owner_change: Some(("Olive Owner".into(), "Nina New".into())),
            ..event("Sync", "Ada Admin")
        };
        let (subject, text) = text_of(&moved);
        assert_eq!(subject, "Your API key \"Sync\" has a new owner");
        assert!(text.contains("was given by Olive Owner to Nina New by Ada Admin at 2026-03-04T05:06:07Z"), "{text}");
        assert!(text.contains("secret is unchanged"), "{text}");
    }

    #[test]
    fn lifecycle_mail_says_until_when_and_who() {
        let until = chrono::Utc.with_ymd_and_hms(2026, 3, 5, 5, 6, 7).unwrap();
        let overlap = Notice { previous_secret_expires_at: Some(until), ..event("Sync", "Ada Admin") };
        let (_, text) = text_of(&overlap);
        assert!(text.contains("previous secret keeps working until 2026-03-05T05:06:07Z"), "{text}");
        for (kind, needle) in
            [(NoticeKind::Disabled, "was disabled by Ada Admin"), (NoticeKind::Enabled, "was enabled by Ada Admin")]
        {
            let (subject, text) = text_of(&Notice { kind, ..event("Sync", "Ada Admin") });
            assert!(text.contains(needle), "{text}");
            assert!(subject.ends_with(kind.as_str()), "{subject}");
        }
        let expiring = Notice { kind: NoticeKind::Expiring, key_expires_at: Some(until), ..event("Sync", "Latchkey") };
        let (subject, text) = text_of(&expiring);
        assert_eq!(subject, "Your API key \"Sync\" expires at 2026-03-05T05:06:07Z");
        assert!(text.contains("(ending in AbC9) expires at 2026-03-05T05:06:07Z."), "{text}");
        assert!(text.contains("https://admin.acme.example/settings/integrations/api"), "{text}");
        let expired = Notice { kind: NoticeKind::Expired, key_expires_at: Some(until), ..event("Sync", "Latchkey") };
        let (subject, text) = text_of(&expired);
        assert_eq!(subject, "Your API key \"Sync\" expired at 2026-03-05T05:06:07Z");
        assert!(text.contains("no longer works"), "{text}");
    }

    fn settings() -> MailSettings {
        MailSettings::new("Latchkey <keys@latchkey.example>", "https://admin.acme.example/").unwrap()
    }

    #[test]
    fn message_says_what_happened_with_a_link_and_stable_id() {
        let raw = compose(&event("Salesforce sync", "Ada Admin"), &settings()).unwrap().formatted();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("Your API key \"Salesforce sync\" was rotated"));
        assert_eq!(parsed.message_id(), Some("key-event-00000000-0000-0000-0000-00000000002a@latchkey.example"));
        assert_eq!(parsed.to().unwrap().first().unwrap().address(), Some("owner@acme.example"));
        assert_eq!(parsed.from().unwrap().first().unwrap().address(), Some("keys@latchkey.example"));
        let text = parsed.body_text(0).unwrap();
        for needle in [
            "Salesforce sync",
            "AbC9",
            "rotated",
            "Ada Admin",
            "2026-03-04T05:06:07Z",
            "https://admin.acme.example/settings/integrations/api",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let html = parsed.body_html(0).unwrap();
        assert!(html.contains("href=\"https://admin.acme.example/settings/integrations/api\""));
    }

    #[test]
    fn hostile_text_adds_no_headers_and_no_markup() {
        let raw = compose(&event("\r\nBcc: x@evil.example <script>alert(1)</script>", "Eve\r\nX-Evil: 1"), &settings())
            .unwrap()
            .formatted();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let header_names: Vec<String> = parsed.headers().iter().map(|h| h.name().to_lowercase()).collect();
        assert!(!header_names.iter().any(|h| h == "bcc" || h == "x-evil"), "{header_names:?}");
        assert_eq!(parsed.to().unwrap().iter().count(), 1);
        let html = parsed.body_html(0).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(parsed.subject().unwrap().contains("Bcc: x@evil.example"), "kept as text, on one line");
    }

    #[test]
    fn unusable_addresses_are_permanent_failures() {
        let mut e = event("k", "a");
        e.owner_email = "not an address".into();
        assert!(matches!(compose(&e, &settings()), Err(DeliveryError::Permanent(_))));
        assert!(MailSettings::new("nope", "http://x").is_err());
    }
}
