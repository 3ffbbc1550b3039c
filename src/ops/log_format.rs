//! How fields are written in the text log, so that one event is always one line whatever the
//! strings in it. User names, database names, startup parameters, a server's error messages
//! and AWS's error messages are chosen by someone other than the operator; written raw, a
//! newline in one of them forges a second log line, and an ESC byte drives the operator's
//! terminal. Every field of every event and span goes through this one formatter: control
//! characters and the Unicode line separators and direction overrides are escaped (`\n`,
//! `\u{1b}`), and a value that holds a space, a quote, `=` or an escape is quoted, with its
//! quotes and backslashes escaped, so it cannot pass for another `key=value` either. The JSON
//! format needs none of this: serde_json escapes every string it writes.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The text log's field formatter: `key=value` pairs separated by spaces, values escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeFields;

impl<'writer> FormatFields<'writer> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl SafeVisitor<'_> {
    /// Writes one field; `always_quote` for strings, which the default format quotes too.
    fn write_field(&mut self, field: &Field, value: &str, always_quote: bool) {
        if self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self.result.and_then(|()| {
            if field.name() == "message" {
                write_escaped(&mut self.writer, value, false)
            } else {
                write!(self.writer, "{}=", field.name())?;
                write_value(&mut self.writer, value, always_quote)
            }
        });
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write_field(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Display values (`%value`) arrive here too, formatted by their `Display`.
        self.write_field(field, &format!("{value:?}"), false);
    }
}

/// A character that must not reach a log line as it is: it could end the line, rewrite the
/// terminal, or reorder what the reader sees.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes a field value: bare when it is one plain token (and not `always_quote`), else
/// quoted and escaped.
fn write_value(out: &mut impl Write, value: &str, always_quote: bool) -> fmt::Result {
    let bare = !always_quote
        && !value.is_empty()
        && !value
            .chars()
            .any(|c| is_unsafe(c) || matches!(c, ' ' | '"' | '=' | '\\'));
    if bare {
        return out.write_str(value);
    }
    out.write_char('"')?;
    write_escaped(out, value, true)?;
    out.write_char('"')
}

/// Writes `text` with unsafe characters escaped, and quotes and backslashes too when it goes
/// between quotes.
fn write_escaped(out: &mut impl Write, text: &str, quoted: bool) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '"' | '\\' if quoted => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            c if is_unsafe(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// The log filter for `--log-level`: a plain level quiets the AWS SDK's own crates to errors
/// unless it asks for `debug` or `trace`. Their warnings about a failed credential chain run to
/// kilobytes of raw HTTP responses, printed before the proxy's own one-line explanation of
/// the same failure; an operator who wants them asks for `debug`. A full directive (anything
/// but a bare level) is used as written.
pub fn filter_directives(log_level: &str) -> String {
    let level = log_level.trim().to_ascii_lowercase();
    match level.as_str() {
        "error" | "warn" | "info" => format!("{level},aws=error"),
        _ => log_level.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(event: impl FnOnce()) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(SafeFields)
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let bytes = captured.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn hostile_strings_stay_on_one_line_and_cannot_pass_for_fields() {
        let forged = "bob\n2026-12-02T00:00:00Z ERROR forged line\r\u{1b}[2J\u{7f}\u{2028}";
        let error = format!("user \"{forged}\" is not allowed");
        let log = logged(|| {
            let span = tracing::info_span!("connection", user = forged);
            let _entered = span.enter();
            tracing::info!(error = %error, application = forged, quoted = "a\" b=c", "refused {}", forged);
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.contains('\u{1b}'), "{log:?}");
        assert!(!log.contains('\r'), "{log:?}");
        assert!(
            log.contains(
                "user=\"bob\\n2026-12-02T00:00:00Z ERROR forged line\\r\\u{1b}[2J\\u{7f}\\u{2028}\""
            ),
            "{log}"
        );
        assert!(log.contains("error=\"user \\\"bob\\n2026"), "{log}");
        assert!(log.contains("quoted=\"a\\\" b=c\""), "{log}");
        assert!(log.contains("refused bob\\n2026"), "{log}");
    }

    #[test]
    fn plain_values_are_written_as_before() {
        let log = logged(|| {
            tracing::info!(
                bytes = 42u64,
                client = %"127.0.0.1:5432",
                outcome = "closed",
                empty = %"",
                "connection closed"
            );
        });
        assert!(
            log.contains(
                "connection closed bytes=42 client=127.0.0.1:5432 outcome=\"closed\" empty=\"\""
            ),
            "{log}"
        );
    }

    #[test]
    fn plain_levels_quiet_the_aws_sdk_and_directives_are_kept() {
        assert_eq!(filter_directives("info"), "info,aws=error");
        assert_eq!(filter_directives("WARN"), "warn,aws=error");
        assert_eq!(filter_directives("debug"), "debug");
        assert_eq!(
            filter_directives("redshift_auth_proxy=debug,aws_config=warn"),
            "redshift_auth_proxy=debug,aws_config=warn"
        );
        let filter = tracing_subscriber::EnvFilter::try_new(filter_directives("info"))
            .expect("a valid filter");
        assert_eq!(filter.to_string(), "aws=error,info");
    }
}
