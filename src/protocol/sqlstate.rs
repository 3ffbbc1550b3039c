//! The SQLSTATE codes the proxy sends, named as PostgreSQL's `errcodes.txt` names them, so
//! each is written once and a client's error handling sees the code the server would use.

/// 08001 sqlclient_unable_to_establish_sqlconnection: the server or AWS cannot be reached.
pub const CLIENT_UNABLE_TO_ESTABLISH_CONNECTION: &str = "08001";
/// 08006 connection_failure: the server broke off the login.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08P01 protocol_violation: a packet or message the protocol does not allow.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// 0A000 feature_not_supported: a protocol version the proxy does not speak.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 28000 invalid_authorization_specification: the user may not log in this way.
pub const INVALID_AUTHORIZATION: &str = "28000";
/// 28P01 invalid_password: a wrong (or expired) password.
pub const INVALID_PASSWORD: &str = "28P01";
/// 53300 too_many_connections: the target is at `--max-connections`.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 57P01 admin_shutdown: the proxy is stopping.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 57P05 idle_session_timeout: no activity for `--idle-timeout`.
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// XX000 internal_error: what a server error without a code is taken as.
pub const INTERNAL_ERROR: &str = "XX000";

/// True for class 28, invalid authorization: the failures `auth_failures_total` counts.
pub fn is_auth_failure(code: &str) -> bool {
    code.starts_with("28")
}
