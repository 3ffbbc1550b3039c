//! How fast the relay's frame walker follows message headers through realistic streams, fed
//! in 64 KiB chunks as the relay reads them (so headers and payloads are split anywhere):
//!
//! - `psql_select_rows`: a psql-like SELECT result, RowDescription, many small three-column
//!   DataRows of varying length (40-70 bytes), CommandComplete, ReadyForQuery;
//! - `data_rows_300b`: the same shape with wide (~300-byte) rows;
//! - `copy_out_text_rows`: COPY … TO STDOUT, one CopyData message per ~100-byte text row;
//! - `copy_data_64k`: large CopyData messages (64 KiB payloads) spanning chunk boundaries;
//! - `client_extended_query`: the client side of extended-protocol queries (Parse, Bind,
//!   Describe, Execute, Sync per query), all small messages.
//!
//! The relay forwards each chunk whole and only walks it, so this is its per-byte protocol
//! cost; small messages are the worst case since the walker pays per header, not per byte.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redshift_auth_proxy::protocol::FrameWalker;
use std::hint::black_box;

/// Bytes of each stream (roughly: the last message may run past it). Small enough to stay in
/// L2 between iterations, because the relay walks a chunk it has just received into its
/// buffer, which is cache-hot. A stream much larger than the cache measures memory latency
/// instead: each header's position depends on the length read from the previous one, and
/// with uneven lengths the prefetcher cannot run ahead, so the walk becomes a chain of
/// cache misses (about 50 times slower for the 300-byte rows).
const TOTAL: usize = 512 << 10;
/// The relay's read size.
const CHUNK: usize = 64 * 1024;

/// A byte stream of whole messages and how many messages it holds.
struct Stream {
    bytes: Vec<u8>,
    messages: u64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            bytes: Vec::with_capacity(TOTAL + 128 * 1024),
            messages: 0,
        }
    }

    fn full(&self) -> bool {
        self.bytes.len() >= TOTAL
    }

    /// Appends one tagged message whose payload `body` writes.
    fn message(&mut self, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&[0; 4]);
        body(&mut self.bytes);
        let len = (self.bytes.len() - start - 1) as u32;
        self.bytes[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        self.messages += 1;
    }
}

/// Deterministic lengths and contents (xorshift), so every run walks the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// `n` printable ASCII bytes.
    fn text(&mut self, n: usize, out: &mut Vec<u8>) {
        out.extend((0..n).map(|_| b'a' + (self.next() % 26) as u8));
    }
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn i16_be(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn i32_be(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// RowDescription for `columns` text columns of a table.
fn row_description(s: &mut Stream, columns: usize) {
    s.message(b'T', |out| {
        i16_be(out, columns as i16);
        for i in 0..columns {
            cstr(out, &format!("column_{i}"));
            i32_be(out, 16_384); // table OID
            i16_be(out, i as i16 + 1); // attribute number
            i32_be(out, 1043); // varchar
            i16_be(out, -1); // variable length
            i32_be(out, 260); // typmod: varchar(256)
            i16_be(out, 0); // text format
        }
    });
}

/// CommandComplete and ReadyForQuery, as every simple-query result ends.
fn finish_query(s: &mut Stream, tag: &str) {
    s.message(b'C', |out| cstr(out, tag));
    s.message(b'Z', |out| out.push(b'I'));
}

/// A SELECT result of `columns`-column DataRows whose whole messages (header included) are
/// `min..=max` bytes long, spread unevenly over the columns. Results repeat until `TOTAL`.
fn select_result(columns: usize, min: usize, max: usize) -> Stream {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = Stream::new();
    // Header (5) + column count (2) + a length word (4) per column.
    let overhead = 5 + 2 + 4 * columns;
    while !s.full() {
        row_description(&mut s, columns);
        let mut rows = 0;
        while rows < 100_000 && !s.full() {
            let mut data = rng.range(min, max) - overhead;
            s.message(b'D', |out| {
                i16_be(out, columns as i16);
                for column in 0..columns {
                    let len = if column + 1 == columns {
                        data
                    } else {
                        rng.range(0, 2 * data / (columns - column)).min(data)
                    };
                    data -= len;
                    i32_be(out, len as i32);
                    rng.text(len, out);
                }
            });
            rows += 1;
        }
        finish_query(&mut s, &format!("SELECT {rows}"));
    }
    s
}

/// COPY … TO STDOUT: CopyOutResponse, one CopyData per text row of `min..=max` bytes,
/// CopyDone, CommandComplete, ReadyForQuery.
fn copy_out(columns: usize, min: usize, max: usize) -> Stream {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut s = Stream::new();
    while !s.full() {
        s.message(b'H', |out| {
            out.push(0); // text
            i16_be(out, columns as i16);
            for _ in 0..columns {
                i16_be(out, 0);
            }
        });
        let mut rows = 0;
        while rows < 100_000 && !s.full() {
            let line = rng.range(min, max);
            s.message(b'd', |out| {
                let start = out.len();
                for column in 0..columns {
                    if column > 0 {
                        out.push(b'\t');
                    }
                    let left = line - 1 - (out.len() - start);
                    let len = if column + 1 == columns {
                        left
                    } else {
                        rng.range(1, left / (columns - column))
                    };
                    rng.text(len, out);
                }
                out.push(b'\n');
            });
            rows += 1;
        }
        s.message(b'c', |_| {});
        finish_query(&mut s, &format!("COPY {rows}"));
    }
    s
}

/// COPY OUT in messages of `payload` bytes each, e.g. a binary or bulk export.
fn large_copy_data(payload: usize) -> Stream {
    let mut s = Stream::new();
    while !s.full() {
        s.message(b'd', |out| out.resize(out.len() + payload, b'x'));
    }
    s
}

/// What a driver such as JDBC or pgx sends per query with unnamed statements: Parse, Bind
/// with a few text parameters, Describe portal, Execute, Sync.
fn client_extended_query() -> Stream {
    const QUERIES: [&str; 4] = [
        "select id, name, email from users where id = $1",
        "select count(*) from events where account_id = $1 and created_at > $2",
        "update sessions set last_seen = now() where token = $1",
        "insert into audit_log (actor, action, detail) values ($1, $2, $3)",
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut s = Stream::new();
    let mut n = 0;
    while !s.full() {
        let query = QUERIES[n % QUERIES.len()];
        n += 1;
        let params = query.matches('$').count();
        s.message(b'P', |out| {
            cstr(out, ""); // unnamed statement
            cstr(out, query);
            i16_be(out, params as i16);
            for _ in 0..params {
                i32_be(out, 0); // let the server infer
            }
        });
        s.message(b'B', |out| {
            cstr(out, ""); // unnamed portal
            cstr(out, "");
            i16_be(out, 0); // all parameters in text
            i16_be(out, params as i16);
            for _ in 0..params {
                let len = rng.range(4, 24);
                i32_be(out, len as i32);
                rng.text(len, out);
            }
            i16_be(out, 0); // all results in text
        });
        s.message(b'D', |out| {
            out.push(b'P');
            cstr(out, "");
        });
        s.message(b'E', |out| {
            cstr(out, "");
            i32_be(out, 0); // no row limit
        });
        s.message(b'S', |_| {});
    }
    s
}

/// Walks `bytes` in relay-sized chunks and returns the number of messages seen.
fn walk(bytes: &[u8]) -> u64 {
    let mut walker = FrameWalker::new();
    let mut messages = 0u64;
    for chunk in bytes.chunks(CHUNK) {
        walker
            .walk(black_box(chunk), |_| messages += 1)
            .expect("well-formed stream");
    }
    assert!(walker.at_boundary(), "stream ends mid-message");
    messages
}

fn bench_walker(c: &mut Criterion) {
    let cases = [
        ("psql_select_rows", select_result(3, 40, 70)),
        ("data_rows_300b", select_result(12, 280, 320)),
        ("copy_out_text_rows", copy_out(6, 90, 110)),
        ("copy_data_64k", large_copy_data(65_536)),
        ("client_extended_query", client_extended_query()),
    ];
    let mut group = c.benchmark_group("frame_walker");
    for (name, stream) in &cases {
        // The streams are built by hand: check the walker agrees before timing it.
        assert_eq!(walk(&stream.bytes), stream.messages, "{name}");
        group.throughput(Throughput::Bytes(stream.bytes.len() as u64));
        group.bench_function(*name, |b| b.iter(|| walk(black_box(&stream.bytes))));
    }
    group.finish();
}

criterion_group!(benches, bench_walker);
criterion_main!(benches);
