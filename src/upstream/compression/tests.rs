use lz4_flex::block::compress_with_dict;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::lz4_stream::{COMPRESSED_DATA, COMPRESSION_ACK};
use super::*;

fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `'z'`, then `plain` as blocks of `cut` bytes with the stream as dictionary.
fn compressed(plain: &[u8], cut: usize) -> Vec<u8> {
    let mut wire = message(COMPRESSION_ACK, b"");
    for (i, chunk) in plain.chunks(cut).enumerate() {
        let start = i * cut;
        let dictionary = &plain[start.saturating_sub(WINDOW)..start];
        wire.extend(message(
            COMPRESSED_DATA,
            &compress_with_dict(chunk, dictionary),
        ));
    }
    wire
}

fn rows(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| message(b'D', format!("{i}|2026-12-06|{}", i * 7 % 1000).as_bytes()))
        .collect()
}

/// Writes `wire` in small pieces from another task, then closes.
fn server_sends(wire: Vec<u8>) -> tokio::io::DuplexStream {
    let (mut far, near) = tokio::io::duplex(8 * 1024);
    tokio::spawn(async move {
        for piece in wire.chunks(1000) {
            if far.write_all(piece).await.is_err() {
                return;
            }
        }
    });
    near
}

#[tokio::test]
async fn a_compressed_stream_reads_as_the_plain_one_and_counts_the_wire() {
    let plain = rows(20_000);
    let wire = compressed(&plain, MAX_BLOCK_OUTPUT - 100);
    let counters = WireCounters::default();
    let mut link = ServerLink::decoding(server_sends(wire.clone()), counters.clone());
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = link.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == plain);
    assert!(link.compressed());
    assert_eq!(counters.from_server.get(), wire.len() as u64);
    assert!(wire.len() * 3 < plain.len(), "the ratio shows");
    assert!(
        link.inflow.as_ref().is_some_and(|i| i.input.is_none()),
        "a drained link holds no input buffer"
    );
}

#[tokio::test]
async fn small_reads_get_the_same_bytes() {
    let plain = rows(3000);
    let mut link = ServerLink::decoding(
        server_sends(compressed(&plain, 5000)),
        WireCounters::default(),
    );
    let mut got = Vec::new();
    let mut small = [0u8; 7];
    loop {
        let n = link.read(&mut small).await.expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&small[..n]);
    }
    assert!(got == plain);
}

#[tokio::test]
async fn a_plain_link_passes_bytes_and_counts_both_ways() {
    let (mut far, near) = tokio::io::duplex(1024);
    let counters = WireCounters::default();
    let mut link = ServerLink::plain(near, counters.clone());
    link.write_all(b"Q\0\0\0\x0bselect\0").await.expect("write");
    far.write_all(b"Z\0\0\0\x05I").await.expect("write");
    let mut answer = [0u8; 6];
    link.read_exact(&mut answer).await.expect("read");
    assert_eq!(&answer, b"Z\0\0\0\x05I");
    assert_eq!(counters.to_server.get(), 12);
    assert_eq!(counters.from_server.get(), 6);
    assert!(!link.compressed());
}

#[tokio::test]
async fn a_server_that_does_not_acknowledge_gets_the_plain_path_and_keeps_its_bytes() {
    let (mut far, near) = tokio::io::duplex(1024);
    let mut link = ServerLink::decoding(near, WireCounters::default());
    let greeting = message(b'Z', b"I");
    let mut sent = greeting.clone();
    sent.extend(message(b'N', b"after"));
    far.write_all(&sent).await.expect("write");
    let mut first = [0u8; 6];
    link.read_exact(&mut first).await.expect("read");
    assert_eq!(&first[..], &greeting[..]);
    let mut pending = Vec::new();
    link.settle(&mut pending);
    assert!(link.inflow.is_none(), "no decoder without 'z'");
    assert_eq!(pending, message(b'N', b"after"));
}

#[tokio::test]
async fn an_acknowledged_link_keeps_decoding_after_the_login() {
    let plain = rows(10);
    let mut link = ServerLink::decoding(
        server_sends(compressed(&plain, 100)),
        WireCounters::default(),
    );
    let mut first = vec![0u8; 5];
    link.read_exact(&mut first).await.expect("read");
    let mut pending = Vec::new();
    link.settle(&mut pending);
    assert!(link.inflow.is_some());
    assert!(pending.is_empty());
}

#[tokio::test]
async fn a_broken_block_is_an_invalid_data_error_that_names_the_cause() {
    let mut wire = message(COMPRESSION_ACK, b"");
    wire.extend(message(COMPRESSED_DATA, &[0x10, b'x', 0xff, 0xff]));
    let mut link = ServerLink::decoding(server_sends(wire), WireCounters::default());
    let mut buf = [0u8; 1024];
    let error = link.read(&mut buf).await.expect_err("broken");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        decompress_error(&error),
        Some(&Lz4StreamError::OutsideHistory)
    );
}

#[test]
fn compression_parses_as_users_write_it() {
    assert_eq!("LZ4".parse::<Compression>().ok(), Some(Compression::Lz4));
    assert_eq!("off".parse::<Compression>().ok(), Some(Compression::Off));
    assert!("zstd".parse::<Compression>().is_err());
    assert_eq!(
        Compression::Lz4.startup_parameter(),
        Some(("_pq_.compression", "lz4"))
    );
    assert_eq!(Compression::Off.startup_parameter(), None);
}

#[tokio::test]
async fn a_broken_block_after_good_output_is_reported_without_waiting_for_more() {
    let good = rows(10);
    let mut wire = compressed(&good, 10_000);
    wire.extend(message(COMPRESSED_DATA, &[0x10, b'x', 0xff, 0xff]));
    let (mut far, near) = tokio::io::duplex(64 * 1024);
    far.write_all(&wire).await.expect("write");
    // `far` stays open: the server waits, as it would for the client's next query.
    let mut link = ServerLink::decoding(near, WireCounters::default());
    let mut buf = vec![0u8; 64 * 1024];
    let n = link.read(&mut buf).await.expect("the good rows");
    assert_eq!(&buf[..n], &good[..]);
    let error = tokio::time::timeout(std::time::Duration::from_secs(5), link.read(&mut buf))
        .await
        .expect("reported at once")
        .expect_err("broken");
    assert_eq!(
        decompress_error(&error),
        Some(&Lz4StreamError::OutsideHistory)
    );
    drop(far);
}
