//! The wire formats the fake speaks, shared by its API families: XML and JSON escaping,
//! timestamps as each protocol writes them, response templates, and parsers of form bodies and
//! JSON objects.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use wiremock::ResponseTemplate;

/// `t` cut to whole seconds, as awsJson and STS write it.
pub(super) fn whole_secs(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

/// `t` cut to whole milliseconds, as Redshift writes it.
pub(super) fn whole_millis(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

pub(super) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// ISO 8601 with milliseconds, as Redshift writes timestamps (`2026-01-02T03:04:05.678Z`).
pub(super) fn iso8601(t: SystemTime) -> String {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let whole = DateTime::from_secs(millis.div_euclid(1000))
        .fmt(Format::DateTime)
        .expect("format");
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        millis.rem_euclid(1000)
    )
}

/// ISO 8601 in whole seconds, as STS writes `Expiration` (`2026-01-02T03:04:05Z`).
pub(super) fn iso8601_secs(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .expect("format")
}

/// Epoch seconds as awsJson services write timestamps: a double in Java's notation
/// (`1.795580855E9`). Whole seconds only, so the SDK's `f64` parse is exact.
pub(super) fn epoch_seconds(t: SystemTime) -> String {
    let digits = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let (first, rest) = digits.split_at(1);
    let rest = rest.trim_end_matches('0');
    let rest = if rest.is_empty() { "0" } else { rest };
    format!("{first}.{rest}E{}", digits.len() - 1)
}

pub(super) fn xml_response(status: u16, body: String, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-RequestId", request_id)
        .set_body_raw(body, "text/xml")
}

pub(super) fn json_response(status: u16, body: String, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-RequestId", request_id)
        .set_body_raw(body, "application/x-amz-json-1.1")
}

/// Parses `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
pub fn parse_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the top level of a JSON object: strings are unescaped, other values (numbers,
/// booleans, null, nested values) are kept as their JSON text. Malformed input yields what was
/// read before the problem.
pub fn parse_json_object(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut p = JsonCursor {
        s: body.as_bytes(),
        i: 0,
    };
    p.ws();
    if !p.eat(b'{') {
        return out;
    }
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let Some(key) = p.string() else { break };
        p.ws();
        if !p.eat(b':') {
            break;
        }
        p.ws();
        let value = if p.peek() == Some(b'"') {
            p.string()
        } else {
            p.raw_value()
        };
        let Some(value) = value else { break };
        out.insert(key, value);
        p.ws();
        if !p.eat(b',') {
            break;
        }
    }
    out
}

struct JsonCursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let mut code = u32::from_str_radix(hex, 16).ok()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let low = std::str::from_utf8(self.s.get(self.i + 2..self.i + 6)?)
                                    .ok()?;
                                let low = u32::from_str_radix(low, 16).ok()?;
                                self.i += 6;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// A non-string value: up to the `,` or `}` that ends it at depth 0.
    fn raw_value(&mut self) -> Option<String> {
        let start = self.i;
        let mut depth = 0i32;
        let mut in_string = false;
        while let Some(b) = self.peek() {
            if in_string {
                match b {
                    b'\\' => self.i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b'}' if depth == 0 => break,
                    _ => {}
                }
            }
            self.i += 1;
        }
        let raw = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        Some(raw.trim().to_owned())
    }
}
