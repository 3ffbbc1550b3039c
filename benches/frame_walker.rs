//! How fast the relay's frame walker follows message headers through realistic streams:
//! many small DataRows (a wide SELECT) and large CopyData (COPY OUT). The relay forwards
//! each chunk whole and only walks it, so this is its per-byte protocol cost.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redshift_auth_proxy::protocol::FrameWalker;
use std::hint::black_box;

fn message(tag: u8, payload_len: usize, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&((payload_len + 4) as u32).to_be_bytes());
    out.extend(std::iter::repeat_n(b'x', payload_len));
}

/// `total` bytes of messages with `payload_len`-byte payloads.
fn stream(tag: u8, payload_len: usize, total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total + payload_len + 5);
    while out.len() < total {
        message(tag, payload_len, &mut out);
    }
    out
}

fn bench_walker(c: &mut Criterion) {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 64 * 1024;
    let cases = [
        ("data_rows_60b", stream(b'D', 60, TOTAL)),
        ("data_rows_300b", stream(b'D', 300, TOTAL)),
        ("copy_data_64k", stream(b'd', 65_536, TOTAL)),
    ];
    let mut group = c.benchmark_group("frame_walker");
    for (name, bytes) in &cases {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut walker = FrameWalker::new();
                let mut messages = 0u64;
                // As the relay reads them: 64 KiB chunks that split messages anywhere.
                for chunk in bytes.chunks(CHUNK) {
                    walker
                        .walk(black_box(chunk), |_| messages += 1)
                        .expect("well-formed stream");
                }
                black_box(messages)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_walker);
criterion_main!(benches);
