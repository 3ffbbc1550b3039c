//! How long the proxy takes to read a client's first packet with `parse_first_packet`: a
//! StartupMessage as psql and as the JDBC driver send it, an SSLRequest and a CancelRequest.
//!
//! Every connection starts here, before any upstream work, and a CancelRequest is a whole
//! connection of its own; this is the proxy's fixed protocol cost per connection attempt (the
//! StartupMessage case includes allocating its parameter strings).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redshift_auth_proxy::protocol::startup::{
    CANCEL_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE, packet_len, parse_first_packet,
};
use redshift_auth_proxy::protocol::{CancelKey, FirstPacket};
use std::hint::black_box;

/// A whole first packet as it travels: `Int32 length` (counting itself), `Int32 code`, body.
fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A StartupMessage with `params` as name/value pairs and the list's final NUL.
fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    packet(PROTOCOL_3_0, &body)
}

fn cancel(key: CancelKey) -> Vec<u8> {
    let mut body = key.process_id.to_be_bytes().to_vec();
    body.extend_from_slice(&key.secret_key.to_be_bytes());
    packet(CANCEL_REQUEST_CODE, &body)
}

/// Reads a first packet as the session does: its length field, then the whole packet.
fn read_first_packet(packet: &[u8]) -> FirstPacket {
    let len = packet_len(packet[..4].try_into().expect("four bytes")).expect("valid length");
    parse_first_packet(&packet[..len]).expect("valid first packet")
}

fn bench_first_packet(c: &mut Criterion) {
    // psql 16 with PGOPTIONS set.
    let psql = startup(&[
        ("user", "alice"),
        ("database", "dev"),
        ("application_name", "psql"),
        ("client_encoding", "UTF8"),
        (
            "options",
            "-c search_path=analytics,public -c statement_timeout=300000",
        ),
    ]);
    // The JDBC driver (pgjdbc and the Redshift driver send the same kind of list).
    let jdbc = startup(&[
        ("user", "etl_loader"),
        ("database", "warehouse"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "Europe/Berlin"),
        ("extra_float_digits", "2"),
        ("application_name", "PostgreSQL JDBC Driver"),
        ("options", "-c search_path=staging"),
    ]);
    let ssl = packet(SSL_REQUEST_CODE, b"");
    let key = CancelKey {
        process_id: 1_073_741_823,
        secret_key: -1_234_567_890,
    };
    let cancel_request = cancel(key);

    // Check the packets say what they should before timing them.
    let FirstPacket::Startup(params) = read_first_packet(&psql) else {
        panic!("psql packet is not a StartupMessage")
    };
    assert_eq!(params.get("options").map(|o| o.len()), Some(59));
    let FirstPacket::Startup(params) = read_first_packet(&jdbc) else {
        panic!("JDBC packet is not a StartupMessage")
    };
    assert_eq!(params.params.len(), 8);
    assert_eq!(read_first_packet(&ssl), FirstPacket::SslRequest);
    assert_eq!(read_first_packet(&cancel_request), FirstPacket::Cancel(key));

    let cases = [
        ("startup_psql", &psql),
        ("startup_jdbc", &jdbc),
        ("ssl_request", &ssl),
        ("cancel_request", &cancel_request),
    ];
    let mut group = c.benchmark_group("first_packet");
    for (name, bytes) in cases {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| read_first_packet(black_box(bytes)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_first_packet);
criterion_main!(benches);
