//! A local stand-in for the AWS credential APIs the proxy calls, so `scripts/demo` can run the
//! IAM path with no AWS account:
//!
//! - `redshift:GetClusterCredentials` and `redshift:GetClusterCredentialsWithIAM` (awsQuery: a
//!   form-encoded `POST /` with `Action=…&Version=2012-12-01`, answered with XML);
//! - `redshift-serverless:GetCredentials` (awsJson1_1: `POST /` with
//!   `X-Amz-Target: RedshiftServerless.GetCredentials` and a JSON body, answered with JSON).
//!
//! Both speak the real wire formats, so the unmodified AWS SDK inside the proxy parses the
//! answers when pointed here with `--aws-endpoint-url http://127.0.0.1:PORT`.
//!
//! Every call issues a fresh random password and, *before* answering, sets it on the local
//! PostgreSQL role the answer names (`IAM:alice`, `IAMA:alice` with `AutoCreate`, or
//! `IAMR:<role>` for the IAM-identity APIs), with `VALID UNTIL` the expiration it returns
//! (now + `DurationSeconds`, default 900, or `--lifetime` to watch refresh and expiry within
//! minutes): credential expiry in the demo is real. PostgreSQL keeps one password per role, so
//! a new call replaces the previous password — unlike Redshift, where earlier temporary
//! passwords stay valid until they expire. To narrow that difference the stand-in waits
//! `--grace-ms` before replacing a password that is still valid, so a login that has just
//! picked up the old one (the proxy refreshes in the background while still handing out the
//! current password) can finish. Sessions already logged in are not affected (as with
//! Redshift). Calls are serialized so the role's password always matches the last answer.
//!
//! This is a demo tool, not a fake for tests (see `tests/e2e/support/fake_aws.rs`): it does NOT
//! check SigV4 signatures or credentials, so anyone who can reach its port gets a database
//! password. It listens on loopback by default. Unknown actions get the protocol's real
//! error (`InvalidAction` in XML, `UnknownOperationException` in JSON); malformed input gets
//! an HTTP 400, never a panic.
//!
//! ```sh
//! PGPASSWORD=… cargo run --release --example aws_standin -- --listen 127.0.0.1:4599 \
//!     --pg "host=/tmp/pgsocketdir port=5432 user=postgres dbname=postgres" --member-of demo
//! ```
//!
//! The PostgreSQL connection is plain (use the Unix socket or `sslmode=disable`); its password
//! comes from `PGPASSWORD` when the connection string has none, so it stays out of `ps`.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use redshift_auth_proxy::credentials::Secret;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_postgres::NoTls;

const REDSHIFT_XMLNS: &str = "http://redshift.amazonaws.com/doc/2012-12-01/";
const SERVERLESS_TARGET: &str = "RedshiftServerless.GetCredentials";
/// Requests are a few hundred bytes; anything far larger is not one of ours.
const MAX_BODY: usize = 64 * 1024;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "A local stand-in for Redshift's credential APIs (demo only; no SigV4 checks)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Connection string of a PostgreSQL superuser on the local server (no TLS: use the Unix
    /// socket directory as host, or sslmode=disable). PGPASSWORD supplies a missing password.
    #[arg(long)]
    pg: String,
    /// The IAM role the caller is: GetCredentials and GetClusterCredentialsWithIAM answer
    /// with the database user `IAMR:<ROLE>`.
    #[arg(long, value_name = "ROLE", default_value = "demo-role")]
    iam_role: String,
    /// Make every issued user a member of this existing role (repeatable), e.g. the owner
    /// of the demo database, so the user can work in it.
    #[arg(long, value_name = "ROLE")]
    member_of: Vec<String>,
    /// Make credentials expire after SECONDS instead of the requested DurationSeconds, to
    /// watch the proxy refresh and expiry within minutes. Example: --lifetime 60.
    #[arg(long, value_name = "SECONDS")]
    lifetime: Option<u64>,
    /// How long to wait before replacing a password that is still valid, so logins already
    /// under way with it can finish (PostgreSQL keeps only one password per role).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    grace_ms: u64,
}

/// Shared state: the PostgreSQL connection (behind a lock, which also serializes issuing).
struct State {
    pg: tokio_postgres::Config,
    client: Mutex<Option<tokio_postgres::Client>>,
    iam_role: String,
    member_of: Vec<String>,
    lifetime: Option<u64>,
    grace: Duration,
}

/// Credentials as one API call hands them out. The password is a `Secret`, so it cannot
/// reach the stand-in's log by accident and is wiped once the answer is written.
struct Issued {
    db_user: String,
    password: Secret,
    expiration: u64,
    next_refresh: u64,
}

/// An error in the caller's protocol: HTTP status, code and message.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut pg: tokio_postgres::Config = args
        .pg
        .parse()
        .map_err(|e| format!("--pg is not a valid connection string: {e}"))?;
    if pg.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        pg.password(password);
    }
    let state = Arc::new(State {
        pg,
        client: Mutex::new(None),
        iam_role: args.iam_role,
        member_of: args.member_of,
        lifetime: args.lifetime,
        grace: Duration::from_millis(args.grace_ms),
    });
    // Fail early (and clearly) when PostgreSQL is unreachable, rather than on the first call.
    drop(
        state
            .client()
            .await
            .map_err(|e| format!("cannot reach PostgreSQL with --pg: {e}"))?,
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "aws-standin: listening on http://{} (no SigV4 checks; demo only)",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("aws-standin: accept failed: {e}");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            // A client hanging up mid-request is its business; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One HTTP request: awsJson1_1 when it carries `X-Amz-Target`, else awsQuery.
async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let amz_target = request
        .headers()
        .get("x-amz-target")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let is_post = request.method() == Method::POST;
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let request_id = request_id();
    Ok(match amz_target {
        Some(target) => {
            let result = match body {
                _ if !is_post => Err(ApiError::bad("ValidationException", "expected POST")),
                Err(_) => Err(ApiError::bad(
                    "ValidationException",
                    "request body unreadable or too large",
                )),
                Ok(body) => serverless(&state, &target, &body).await,
            };
            json_response(result, &request_id)
        }
        None => {
            let (action, result) = match body {
                _ if !is_post => (None, Err(ApiError::bad("InvalidAction", "expected POST"))),
                Err(_) => (
                    None,
                    Err(ApiError::bad(
                        "MalformedQueryString",
                        "request body unreadable or too large",
                    )),
                ),
                Ok(body) => query(&state, &body).await,
            };
            xml_response(action.as_deref(), result, &request_id)
        }
    })
}

/// `redshift-serverless:GetCredentials` (awsJson1_1).
async fn serverless(state: &State, target: &str, body: &[u8]) -> Result<Issued, ApiError> {
    if target != SERVERLESS_TARGET {
        return Err(ApiError::bad(
            "UnknownOperationException",
            format!("unknown operation {target:?}; this stand-in only serves {SERVERLESS_TARGET}"),
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("SerializationException", format!("invalid JSON: {e}")))?;
    let workgroup = json
        .get("workgroupName")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::bad("ValidationException", "workgroupName is required"))?;
    let db_name = json.get("dbName").and_then(|v| v.as_str());
    let duration = match json.get("durationSeconds") {
        None => 900,
        Some(v) => v
            .as_u64()
            .filter(|d| (900..=3600).contains(d))
            .ok_or_else(|| {
                ApiError::bad(
                    "ValidationException",
                    "durationSeconds must be between 900 and 3600",
                )
            })?,
    };
    let db_user = format!("IAMR:{}", state.iam_role);
    let issued = state.issue(&db_user, db_name, duration).await?;
    log("GetCredentials", "workgroup", workgroup, db_name, &issued);
    Ok(issued)
}

/// `redshift:GetClusterCredentials` and `GetClusterCredentialsWithIAM` (awsQuery).
/// Returns the action name (for the response element) with the outcome.
async fn query(state: &State, body: &[u8]) -> (Option<String>, Result<Issued, ApiError>) {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let action = match param("Action") {
        Some(a @ ("GetClusterCredentials" | "GetClusterCredentialsWithIAM")) => a.to_owned(),
        Some(other) => {
            let message = format!("Could not find operation {other} for version 2012-12-01");
            return (None, Err(ApiError::bad("InvalidAction", message)));
        }
        None => {
            return (
                None,
                Err(ApiError::bad("MissingAction", "Action is missing")),
            );
        }
    };
    let result = async {
        let cluster = param("ClusterIdentifier")
            .ok_or_else(|| ApiError::bad("MissingParameter", "ClusterIdentifier is required"))?;
        let db_name = param("DbName");
        let duration = match param("DurationSeconds") {
            None => 900,
            Some(d) => d
                .parse::<u64>()
                .ok()
                .filter(|d| (900..=3600).contains(d))
                .ok_or_else(|| {
                    ApiError::bad(
                        "InvalidParameterValue",
                        "DurationSeconds must be between 900 and 3600",
                    )
                })?,
        };
        let db_user = if action == "GetClusterCredentialsWithIAM" {
            format!("IAMR:{}", state.iam_role)
        } else {
            let user = param("DbUser")
                .ok_or_else(|| ApiError::bad("MissingParameter", "DbUser is required"))?;
            if let Some(why) = db_user_problem(user) {
                return Err(ApiError::bad(
                    "InvalidParameterValue",
                    format!("DbUser {why}"),
                ));
            }
            let prefix = if param("AutoCreate") == Some("true") {
                "IAMA"
            } else {
                "IAM"
            };
            format!("{prefix}:{user}")
        };
        let issued = state.issue(&db_user, db_name, duration).await?;
        log(&action, "cluster", cluster, db_name, &issued);
        Ok(issued)
    }
    .await;
    (Some(action), result)
}

/// Redshift's rules for `DbUser`: 1–64 characters, a letter first, then letters, digits and
/// `_+.@-`; not `PUBLIC`. Checking them also keeps odd names away from the SQL below.
fn db_user_problem(user: &str) -> Option<&'static str> {
    let mut chars = user.chars();
    if user.is_empty() || user.len() > 64 {
        Some("must be 1 to 64 characters")
    } else if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        Some("must start with a letter")
    } else if !chars.all(|c| c.is_ascii_alphanumeric() || "_+.@-".contains(c)) {
        Some("may contain only letters, digits and _+.@-")
    } else if user.eq_ignore_ascii_case("public") {
        Some("must not be PUBLIC")
    } else {
        None
    }
}

/// One line per call, never the password. Names from the request are escaped so they cannot
/// forge log lines.
fn log(api: &str, kind: &str, name: &str, db_name: Option<&str>, issued: &Issued) {
    eprintln!(
        "aws-standin: {api} {kind}={} db={} user={} expires={}",
        name.escape_debug(),
        db_name.unwrap_or("-").escape_debug(),
        issued.db_user,
        iso8601(issued.expiration)
    );
}

impl State {
    /// The PostgreSQL client, reconnecting when the last one was closed.
    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, String> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self.pg.connect(NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("aws-standin: PostgreSQL connection ended: {e}");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    /// Sets a fresh password on `db_user` valid for `duration` seconds, then returns it.
    async fn issue(
        &self,
        db_user: &str,
        db_name: Option<&str>,
        duration: u64,
    ) -> Result<Issued, ApiError> {
        let internal = |what: String| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: what,
        };
        let password = Secret::new(hex(
            &random_bytes::<16>().map_err(|e| internal(e.to_string()))?
        ));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| internal(e.to_string()))?
            .as_secs();
        let lifetime = self.lifetime.unwrap_or(duration);
        let expiration = now + lifetime;
        let guard = self
            .client()
            .await
            .map_err(|e| internal(format!("PostgreSQL unreachable: {e}")))?;
        let Some(client) = guard.as_ref() else {
            return Err(internal("PostgreSQL unreachable".to_owned()));
        };
        let role = ident(db_user);
        // Store a SCRAM verifier, so the cleartext password never reaches the server (or its
        // log, should the statement fail).
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        let mut sql = String::new();
        let still_valid: Option<bool> = client
            .query_opt(
                "select coalesce(rolvaliduntil > now(), true) from pg_roles where rolname = $1",
                &[&db_user],
            )
            .await
            .map_err(|e| internal(e.to_string()))?
            .map(|row| row.get(0));
        match still_valid {
            None => sql.push_str(&format!("create role {role} login;\n")),
            // Redshift keeps earlier temporary passwords valid until they expire; here the new
            // one replaces the old, so let a login that just picked up the old one finish.
            Some(true) => tokio::time::sleep(self.grace).await,
            Some(false) => {}
        }
        sql.push_str(&format!(
            "alter role {role} login password {} valid until {};\n",
            literal(&verifier),
            literal(&iso8601(expiration))
        ));
        if let Some(db) = db_name {
            let db_exists = client
                .query_opt("select 1 from pg_database where datname = $1", &[&db])
                .await
                .map_err(|e| internal(e.to_string()))?
                .is_some();
            if db_exists {
                sql.push_str(&format!(
                    "grant connect, temporary on database {} to {role};\n",
                    ident(db)
                ));
            }
        }
        for group in &self.member_of {
            sql.push_str(&format!("grant {} to {role};\n", ident(group)));
        }
        client
            // One simple query: PostgreSQL runs its statements as one implicit transaction.
            .batch_execute(&sql)
            .await
            .map_err(|e| internal(format!("setting the password of {db_user} failed: {e}")))?;
        Ok(Issued {
            db_user: db_user.to_owned(),
            password,
            expiration,
            // Like AWS: a hint to refresh a while before expiry.
            next_refresh: expiration.saturating_sub(lifetime / 4).max(now),
        })
    }
}

/// The awsJson1_1 answer: the credentials, or `{"__type": code, "message": …}`.
fn json_response(result: Result<Issued, ApiError>, request_id: &str) -> Response<Full<Bytes>> {
    let (status, code, body) = match result {
        Ok(issued) => (
            StatusCode::OK,
            None,
            serde_json::json!({
                "dbUser": issued.db_user,
                "dbPassword": issued.password.expose(),
                "expiration": issued.expiration,
                "nextRefreshTime": issued.next_refresh,
            }),
        ),
        Err(e) => (
            e.status,
            Some(e.code),
            serde_json::json!({ "__type": e.code, "message": e.message }),
        ),
    };
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-RequestId", request_id);
    if let Some(code) = code {
        builder = builder.header("x-amzn-ErrorType", code);
    }
    finish(builder, body.to_string())
}

/// The awsQuery answer: `<{Action}Response>` with the result, or `<ErrorResponse>`.
fn xml_response(
    action: Option<&str>,
    result: Result<Issued, ApiError>,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let (status, body) = match (action, result) {
        (Some(action), Ok(issued)) => {
            let refresh = if action == "GetClusterCredentialsWithIAM" {
                format!(
                    "<NextRefreshTime>{}</NextRefreshTime>",
                    iso8601(issued.next_refresh)
                )
            } else {
                String::new()
            };
            (
                StatusCode::OK,
                format!(
                    "<{action}Response xmlns=\"{REDSHIFT_XMLNS}\"><{action}Result>\
                     <DbUser>{}</DbUser><DbPassword>{}</DbPassword>\
                     <Expiration>{}</Expiration>{refresh}</{action}Result>\
                     <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
                     </{action}Response>",
                    xml_escape(&issued.db_user),
                    xml_escape(issued.password.expose()),
                    iso8601(issued.expiration)
                ),
            )
        }
        (_, Err(e)) => (e.status, xml_error(&e, request_id)),
        (None, Ok(_)) => {
            let e = ApiError::bad("InvalidAction", "no action");
            (e.status, xml_error(&e, request_id))
        }
    };
    let builder = Response::builder()
        .status(status)
        .header("content-type", "text/xml");
    finish(builder, body)
}

fn xml_error(e: &ApiError, request_id: &str) -> String {
    let kind = if e.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{REDSHIFT_XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        e.code,
        xml_escape(&e.message)
    )
}

fn finish(builder: hyper::http::response::Builder, body: String) -> Response<Full<Bytes>> {
    builder
        .body(Full::new(Bytes::from(body)))
        // Only reachable with an invalid header, and every header above is a constant or hex.
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error"))))
}

/// `2026-11-25T05:00:00Z`, as awsQuery timestamps and PostgreSQL's `VALID UNTIL` take it.
fn iso8601(epoch_secs: u64) -> String {
    DateTime::from_secs(i64::try_from(epoch_secs).unwrap_or(i64::MAX))
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Random bytes from the kernel, so the example needs no RNG crate.
fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random id in UUID form, like AWS request ids.
fn request_id() -> String {
    let h = hex(&random_bytes::<16>().unwrap_or([0; 16]));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings is on by default).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
