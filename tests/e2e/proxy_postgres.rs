//! End to end through the proxy against a real PostgreSQL with TLS and password auth:
//! real clients (tokio-postgres, psql), every auth method, COPY both ways, cancel, errors.

use std::time::{Duration, Instant};

use crate::support::pg::{self, PgServer};
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::scripted;
use futures_util::{SinkExt, StreamExt, pin_mut};
use redshift_auth_proxy::protocol::CancelKey;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// A proxy in front of the shared server, logging in as `user` with `password`.
async fn proxy_for(server: &PgServer, user: &str, password: &str) -> TestProxy {
    let target = format!(
        "localhost:{}/dev?db_user={user}&password_env=UNUSED",
        server.port()
    );
    TestProxy::start(ProxyOptions::new(target, password, server.ca_pem_path())).await
}

/// Connects tokio-postgres to the proxy, with no password.
async fn client(proxy: &TestProxy) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&proxy.conninfo("dev"), NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(connection);
    client
}

async fn connect_error(proxy: &TestProxy) -> tokio_postgres::Error {
    match tokio_postgres::connect(&proxy.conninfo("dev"), NoTls).await {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_method_logs_in_without_a_client_password() {
    let server = PgServer::shared();
    for (user, password) in [
        (pg::SCRAM_USER, pg::SCRAM_PASSWORD),
        (pg::MD5_USER, pg::MD5_PASSWORD),
        (pg::PLAIN_USER, pg::PLAIN_PASSWORD),
    ] {
        let proxy = proxy_for(server, user, password).await;
        let client = client(&proxy).await;
        let row = client
            .query_one(
                "select current_user::text, ssl from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("query");
        assert_eq!(
            row.get::<_, String>(0),
            user,
            "logged in as the target's db_user"
        );
        assert!(row.get::<_, bool>(1), "upstream connection uses TLS");
        drop(client);
        proxy.stop().await;
    }
}

/// The proxy keeps the keys SCRAM's PBKDF2 derives per (password, salt, rounds). Later logins
/// reuse them; setting the password again (PostgreSQL draws a new salt) makes the proxy derive
/// again; a changed password is still refused, whatever was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_keys_kept_across_logins_follow_the_servers_salt() {
    let server = PgServer::shared();
    let role = "scram_rekey_user";
    let password = "rekey-Ω-secret";
    server.sql(&[
        &format!("drop role if exists {role}"),
        &format!("create role {role} login password '{password}'"),
    ]);
    let proxy = proxy_for(server, role, password).await;
    let logged_in_as = |proxy: &TestProxy| {
        let conninfo = proxy.conninfo("dev");
        async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
                .await
                .expect("connect through the proxy");
            tokio::spawn(connection);
            pg::current_user(&client).await
        }
    };
    for _ in 0..3 {
        assert_eq!(logged_in_as(&proxy).await, role);
    }
    // Set again, the same password gets a new salt.
    server.sql(&[&format!("alter role {role} password '{password}'")]);
    assert_eq!(logged_in_as(&proxy).await, role);

    server.sql(&[&format!("alter role {role} password 'another-password'")]);
    let error = connect_error(&proxy).await;
    assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
    proxy.stop().await;
    server.sql(&[&format!("drop role {role}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_with_binary_parameters() {
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let client = client(&proxy).await;

    let messages = client
        .simple_query("select 1 as one; select 'two'")
        .await
        .expect("simple");
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["1", "two"]);

    let bytes: Vec<u8> = (0..=255u8).collect();
    let row = client
        .query_one(
            "select $1::int8 + 1, $2::bytea, $3::text || '!', $4::float8 * 2",
            &[&41i64, &bytes, &"héllo", &1.25f64],
        )
        .await
        .expect("extended query");
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, Vec<u8>>(1), bytes);
    assert_eq!(row.get::<_, String>(2), "héllo!");
    assert_eq!(row.get::<_, f64>(3), 2.5);

    let statement = client
        .prepare("select $1::int4 * $1::int4")
        .await
        .expect("prepare");
    for i in 0..50i32 {
        let row = client.query_one(&statement, &[&i]).await.expect("execute");
        assert_eq!(row.get::<_, i32>(0), i * i);
    }
    drop(client);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_errors_reach_the_client() {
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let (client, mut connection) = tokio_postgres::connect(&proxy.conninfo("dev"), NoTls)
        .await
        .expect("connect");
    let (notices_tx, mut notices_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        pin_mut!(stream);
        while let Some(Ok(message)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = notices_tx.send(notice.message().to_owned());
            }
        }
    });
    client
        .batch_execute("do $$ begin raise notice 'hello from the server'; end $$")
        .await
        .expect("do block");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices_rx.recv())
        .await
        .expect("notice arrives")
        .expect("notice");
    assert_eq!(notice, "hello from the server");

    let error = client
        .simple_query("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
    // The session survives an error.
    let row = client
        .query_one("select 7", &[])
        .await
        .expect("after error");
    assert_eq!(row.get::<_, i32>(0), 7);
    drop(client);
    proxy.stop().await;
}

/// A simple Query message.
fn simple_query(sql: &str) -> Vec<u8> {
    let mut text = sql.as_bytes().to_vec();
    text.push(0);
    scripted::message(b'Q', &text)
}

/// Messages from `stream` up to and including ReadyForQuery, within 40 s.
async fn until_ready(stream: &mut tokio::net::TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    loop {
        let (tag, payload) =
            tokio::time::timeout(Duration::from_secs(40), scripted::read_message(stream))
                .await
                .expect("an answer within 40 s")
                .expect("the session is open");
        messages.push((tag, payload));
        if tag == b'Z' {
            return messages;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_proxy_issued_cancel_keys_and_forged_ones_cancel_nothing() {
    use tokio::io::AsyncWriteExt;
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect to the proxy");
    scripted::send_startup(&mut stream, &[("user", "anything"), ("database", "dev")]).await;
    let greeting = until_ready(&mut stream).await;
    let keys: Vec<CancelKey> = greeting
        .iter()
        .filter(|(tag, _)| *tag == b'K')
        .map(|(_, payload)| {
            assert_eq!(payload.len(), 8, "BackendKeyData holds two Int32s");
            CancelKey::from_payload(payload).expect("a key")
        })
        .collect();
    let [issued] = keys[..] else {
        panic!("one BackendKeyData in the greeting, not {keys:?}");
    };
    assert!(issued.process_id > 0, "a positive process id: {issued:?}");
    assert_eq!(proxy.cancel.len(), 1, "the issued key is registered");

    // The server's process id is not the one the client was given.
    stream
        .write_all(&simple_query("select pg_backend_pid()"))
        .await
        .expect("query");
    let answer = until_ready(&mut stream).await;
    let server_pid: i32 = answer
        .iter()
        .find(|(tag, _)| *tag == b'D')
        .and_then(|(_, row)| std::str::from_utf8(row.get(6..)?).ok()?.parse().ok())
        .expect("pg_backend_pid() in a DataRow");
    assert_ne!(
        server_pid, issued.process_id,
        "the client's BackendKeyData is the proxy's, not the server's"
    );

    // Forged keys while a query runs: the issued pid with another secret, the server's pid
    // with the issued secret, a made-up key. None reaches the server; the query finishes.
    stream
        .write_all(&simple_query("select pg_sleep(1.5)"))
        .await
        .expect("query");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forged = [
        CancelKey {
            process_id: issued.process_id,
            secret_key: issued.secret_key ^ 1,
        },
        CancelKey {
            process_id: server_pid,
            secret_key: issued.secret_key,
        },
        CancelKey {
            process_id: 1,
            secret_key: 1,
        },
    ];
    for key in forged {
        scripted::send_cancel(proxy.addr.port(), key).await;
    }
    let answer = until_ready(&mut stream).await;
    assert!(
        answer.iter().all(|(tag, _)| *tag != b'E'),
        "a forged key cancelled the query: {:?}",
        answer
            .iter()
            .find(|(tag, _)| *tag == b'E')
            .map(|(_, e)| scripted::error_field(e, b'M'))
    );
    assert_eq!(proxy.cancel.counts().unknown, 3);
    assert_eq!(proxy.cancel.counts().local, 0);
    let metrics = proxy.metrics.encode();
    assert!(
        metrics.lines().any(
            |line| line.starts_with("redshift_proxy_cancel_requests_total{")
                && line.contains("outcome=\"unknown\"")
                && line.ends_with(" 3")
        ),
        "{metrics}"
    );

    // The issued key cancels: the proxy forwards the server's key. A cancel that lands before
    // the backend runs the query is ignored by PostgreSQL, so it is repeated each second.
    stream
        .write_all(&simple_query("select pg_sleep(30)"))
        .await
        .expect("query");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "not cancelled");
        scripted::send_cancel(proxy.addr.port(), issued).await;
        let next = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match scripted::read_message(&mut stream).await {
                    Some((b'T', _)) => continue,
                    other => return other,
                }
            }
        });
        match next.await {
            Ok(Some((b'E', payload))) => break payload,
            Ok(other) => panic!("{other:?} instead of the cancel's error"),
            Err(_) => continue,
        }
    };
    assert_eq!(
        scripted::error_field(&error, b'C').as_deref(),
        Some("57014"),
        "{:?}",
        scripted::error_field(&error, b'M')
    );
    assert!(proxy.cancel.counts().local >= 1);
    assert_eq!(until_ready(&mut stream).await.len(), 1, "ReadyForQuery");

    // Once the session is closed its key is stale: counted, sent nowhere.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.cancel.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.cancel.is_empty(), "the closed session's key is gone");
    let local = proxy.cancel.counts().local;
    scripted::send_cancel(proxy.addr.port(), issued).await;
    assert_eq!(proxy.cancel.counts().unknown, 4);
    assert_eq!(proxy.cancel.counts().local, local);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_token_cancels_a_long_query() {
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let client = client(&proxy).await;
    let token = client.cancel_token();
    let query = tokio::spawn(async move {
        let result = client.simple_query("select pg_sleep(30)").await;
        (client, result)
    });
    // Let the query start before cancelling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel request sent");
    let (client, result) = query.await.expect("query task");
    let error = result.expect_err("query was cancelled");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The proxy counts the cancel once the server has closed the cancel connection, which
    // may be just after the client sees its query fail.
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.cancel.counts().local == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.cancel.counts().local, 1);

    // An unknown key is dropped silently and counted.
    let stranger = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let mut stranger = stranger;
    let packet = redshift_auth_proxy::protocol::startup::encode_cancel_request(
        redshift_auth_proxy::protocol::CancelKey {
            process_id: 1,
            secret_key: 1,
        },
    );
    tokio::io::AsyncWriteExt::write_all(&mut stranger, &packet)
        .await
        .expect("send");
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stranger, &mut rest)
        .await
        .expect("closed");
    assert!(rest.is_empty(), "nothing is answered to a cancel request");
    assert_eq!(proxy.cancel.counts().unknown, 1);
    drop(client);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_are_forwarded_or_explained() {
    let server = PgServer::shared();

    // Wrong password: the server's own 28P01.
    let proxy = proxy_for(server, pg::SCRAM_USER, "not-the-password").await;
    let error = connect_error(&proxy).await;
    assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
    proxy.stop().await;

    // Unknown database: the server's own 3D000.
    let target = format!(
        "localhost:{}/no_such_db?db_user={}&password_env=UNUSED",
        server.port(),
        pg::SCRAM_USER
    );
    let proxy = TestProxy::start(ProxyOptions::new(
        target,
        pg::SCRAM_PASSWORD,
        server.ca_pem_path(),
    ))
    .await;
    let error = connect_error(&proxy).await;
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{error}"
    );
    proxy.stop().await;

    // A CA that did not sign the server's certificate: 08001 naming the problem and the fix.
    let target = format!(
        "localhost:{}/dev?db_user={}&password_env=UNUSED",
        server.port(),
        pg::SCRAM_USER
    );
    let proxy = TestProxy::start(ProxyOptions::new(
        target.clone(),
        pg::SCRAM_PASSWORD,
        server.wrong_ca_pem_path(),
    ))
    .await;
    let error = connect_error(&proxy).await;
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_error.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(
        db_error.message().contains("not trusted"),
        "{}",
        db_error.message()
    );
    assert!(
        db_error.message().contains("--upstream-ca"),
        "{}",
        db_error.message()
    );
    proxy.stop().await;

    // The right CA but a name the certificate does not carry.
    let target = format!(
        "127.0.0.2:{}/dev?db_user={}&password_env=UNUSED",
        server.port(),
        pg::SCRAM_USER
    );
    let mut options = ProxyOptions::new(target, pg::SCRAM_PASSWORD, server.ca_pem_path());
    options.connect_timeout = Duration::from_secs(2);
    let proxy = TestProxy::start(options).await;
    let error = connect_error(&proxy).await;
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_error.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_08001_naming_the_address() {
    let port = pg::free_port();
    let target = format!("localhost:{port}/dev?db_user=alice&password_env=UNUSED");
    let mut options = ProxyOptions::new(target, "x", PgServer::shared().ca_pem_path());
    options.connect_timeout = Duration::from_secs(2);
    let proxy = TestProxy::start(options).await;
    let error = connect_error(&proxy).await;
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_error.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(
        db_error.message().contains(&format!("localhost:{port}")),
        "{}",
        db_error.message()
    );
    proxy.stop().await;
}

/// Hashes a COPY OUT stream and counts its bytes.
async fn copy_out_digest(client: &tokio_postgres::Client, sql: &str) -> (String, u64, Duration) {
    let started = Instant::now();
    let stream = client.copy_out(sql).await.expect("copy out");
    pin_mut!(stream);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("copy data");
        total += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let digest = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (digest, total, started.elapsed())
}

const COPY_ROWS: i64 = 1_000_000;
const COPY_QUERY: &str =
    "copy (select i, repeat(md5(i::text), 3) from generate_series(1, 1000000) i) to stdout";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_and_in_of_100_mb_keep_every_byte() {
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let through_proxy = client(&proxy).await;
    let direct = server
        .connect_direct(pg::SCRAM_USER, pg::SCRAM_PASSWORD, "dev")
        .await;

    // COPY OUT: the bytes through the proxy are the bytes straight from the server.
    let (direct_digest, direct_bytes, direct_time) = copy_out_digest(&direct, COPY_QUERY).await;
    let (proxy_digest, proxy_bytes, proxy_time) = copy_out_digest(&through_proxy, COPY_QUERY).await;
    assert!(
        proxy_bytes >= 100_000_000,
        "{proxy_bytes} bytes is at least 100 MB"
    );
    assert_eq!(proxy_bytes, direct_bytes);
    assert_eq!(proxy_digest, direct_digest);
    eprintln!(
        "COPY OUT {proxy_bytes} bytes: direct TLS {direct_time:?}, through the proxy {proxy_time:?} (ratio {:.2})",
        proxy_time.as_secs_f64() / direct_time.as_secs_f64()
    );

    // COPY IN: send the same 100 MB through the proxy, read it back directly, compare.
    through_proxy
        .batch_execute("drop table if exists copy_in_check; create table copy_in_check (id int8 primary key, payload text)")
        .await
        .expect("create table");
    let sink = through_proxy
        .copy_in("copy copy_in_check (id, payload) from stdin")
        .await
        .expect("copy in");
    pin_mut!(sink);
    let mut sent = Sha256::new();
    let mut batch = Vec::with_capacity(1 << 20);
    let mut sent_bytes = 0u64;
    for i in 1..=COPY_ROWS {
        let hash: String = md5::Md5::digest(i.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let line = format!("{i}\t{hash}{hash}{hash}\n");
        batch.extend_from_slice(line.as_bytes());
        if batch.len() >= 1 << 20 || i == COPY_ROWS {
            sent.update(&batch);
            sent_bytes += batch.len() as u64;
            sink.send(bytes::Bytes::from(std::mem::take(&mut batch)))
                .await
                .expect("copy data");
        }
    }
    let rows = sink.finish().await.expect("copy in finishes");
    assert_eq!(rows, COPY_ROWS as u64);
    assert!(sent_bytes >= 100_000_000);
    let sent_digest: String = sent.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let (stored_digest, stored_bytes, _) = copy_out_digest(
        &direct,
        "copy (select id, payload from copy_in_check order by id) to stdout",
    )
    .await;
    assert_eq!(stored_bytes, sent_bytes);
    assert_eq!(stored_digest, sent_digest);
    // And it matches what the server generates itself.
    assert_eq!(stored_digest, direct_digest);
    direct
        .batch_execute("drop table copy_in_check")
        .await
        .expect("drop");
    drop(through_proxy);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_a_query_and_copy_through_the_proxy() {
    let server = PgServer::shared();
    let proxy = proxy_for(server, pg::SCRAM_USER, pg::SCRAM_PASSWORD).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("rows.tsv");
    std::fs::write(&data, "1\tone\n2\ttwo\n3\tthree\n").expect("write data");
    let out = dir.path().join("out.tsv");
    // psql's default sslmode=prefer sends SSLRequest first; the proxy answers N.
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=dev user=whoever",
        proxy.port()
    );
    let script = format!(
        "select current_user;\n\
         create temp table t (id int, name text);\n\
         \\copy t from '{}'\n\
         \\copy (select * from t order by id) to '{}'\n\
         select count(*) from t;\n",
        data.display(),
        out.display()
    );
    let script_file = dir.path().join("script.sql");
    std::fs::write(&script_file, script).expect("write script");
    let output = tokio::process::Command::new(server.psql_bin())
        .arg(&conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script_file)
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psql failed: {stdout}\n{stderr}");
    assert!(stdout.contains(pg::SCRAM_USER), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == "3"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("copied out"),
        "1\tone\n2\ttwo\n3\tthree\n"
    );
    proxy.stop().await;
}
