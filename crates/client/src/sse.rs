//! Reading Server-Sent Events as they arrive (the WHATWG event-stream
//! format: `field: value` lines, a blank line ends an event).

/// One event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Events from chunks of bytes.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    current: Event,
    has_data: bool,
}

impl Parser {
    /// Feeds `chunk`; the events it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut done = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if self.has_data || event.id.is_some() {
                    done.push(Event {
                        event: if event.event.is_empty() { "message".into() } else { event.event },
                        ..event
                    });
                }
                self.has_data = false;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let (field, value) = match text.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (&*text, ""),
            };
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {} // `retry`, comments (an empty field), unknown fields
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_read_whole() {
        let text = b"retry: 1000\n\nid: 1-2-3\r\nevent: heartbeat\ndata: {\"tenantId\":\"t\"}\n\n: comment\nevent: revoked\nid: 2-2-3\ndata: {}\n\n";
        let mut parser = Parser::default();
        let mut events = Vec::new();
        for chunk in text.chunks(7) {
            events.extend(parser.feed(chunk));
        }
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].id.as_deref(), events[0].event.as_str()), (Some("1-2-3"), "heartbeat"));
        assert_eq!(events[0].data, "{\"tenantId\":\"t\"}");
        assert_eq!((events[1].id.as_deref(), events[1].event.as_str()), (Some("2-2-3"), "revoked"));
    }
}
