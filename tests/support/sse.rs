//! A Server-Sent Events reader for `/v1/verifications/stream`, reading the
//! response body as it arrives (what any SSE client does).

use std::time::Duration;

/// One event of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `id`, when it has one.
    pub id: Option<String>,
    /// Its `event` type (`message` when unnamed).
    pub event: String,
    /// Its `data`, as JSON.
    pub data: serde_json::Value,
}

/// An open stream.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// The last id seen (what a client sends back as `Last-Event-ID`).
    pub last_event_id: Option<String>,
}

impl SseStream {
    /// Opens the stream at `base` with `key`, resuming after `last_event_id`;
    /// the response as it came when it is not a stream (an error).
    pub async fn open(
        http: &reqwest::Client,
        base: &str,
        key: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, reqwest::Response> {
        let mut request = http.get(format!("{base}/v1/verifications/stream")).bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("stream request");
        let is_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if response.status() != 200 || !is_stream {
            return Err(response);
        }
        Ok(SseStream { response, buffer: String::new(), last_event_id: last_event_id.map(str::to_owned) })
    }

    /// The next event, heartbeats included, within `wait`; `None` when
    /// the wait ends or the stream does.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event other than a heartbeat, within `wait`.
    pub async fn next_signal_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_within(left).await?;
            if event.event != "heartbeat" {
                return Some(event);
            }
        }
    }

    /// Whether the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        matches!(tokio::time::timeout(wait, self.response.chunk()).await, Ok(Ok(None)))
    }

    /// Parses one complete event out of the buffer (blocks separated by a
    /// blank line; lines without `data`, like `retry:`, yield nothing).
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => event = value.to_owned(),
                    "data" => data.push_str(value),
                    _ => {}
                }
            }
            if data.is_empty() {
                continue;
            }
            if id.is_some() {
                self.last_event_id = id.clone();
            }
            let data = serde_json::from_str(&data).expect("event data is JSON");
            return Some(SseEvent { id, event, data });
        }
    }
}
