//! PostgreSQL's greeting rewritten as Redshift's (docs/architecture.md, "The greeting"):
//! `server_version` 8.0.2, `server_encoding` UNICODE, `session_authorization` the Redshift
//! user rather than the mapped role, and the Redshift-only `padb_version`, `padb_revision`
//! and `datashare_enabled` before BackendKeyData. No `server_protocol_version`: without it
//! the drivers keep to the base protocol, the one PostgreSQL can serve. BackendKeyData,
//! notices and ReadyForQuery stay PostgreSQL's, so a client's cancel names a real backend.

use super::wire;

/// The ParameterStatus values a Redshift endpoint reports that PostgreSQL does not (or
/// reports differently). The padb values are of the shape Redshift sends; drivers only
/// look for their presence.
pub const REDSHIFT_PARAMETERS: [(&str, &str); 5] = [
    ("server_version", "8.0.2"),
    ("server_encoding", "UNICODE"),
    ("padb_version", "1.0.78412"),
    ("padb_revision", "78412"),
    ("datashare_enabled", "off"),
];

/// AuthenticationOk, then `postgres` (what followed PostgreSQL's AuthenticationOk) with the
/// parameters above, for Redshift user `user`.
pub fn rewrite(postgres: &[(u8, Vec<u8>)], user: &str) -> Vec<u8> {
    let mut out = wire::message(b'R', &0u32.to_be_bytes());
    let mut added = false;
    for (tag, payload) in postgres {
        if *tag == b'S' {
            if let Some((name, value)) = wire::parse_parameter_status(payload) {
                let value = match name {
                    "session_authorization" => user,
                    _ => REDSHIFT_PARAMETERS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(value, |(_, v)| v),
                };
                out.extend(wire::parameter_status(name, value));
                continue;
            }
        } else if !added {
            added = true;
            for (name, value) in &REDSHIFT_PARAMETERS[2..] {
                out.extend(wire::parameter_status(name, value));
            }
        }
        out.extend(wire::message(*tag, payload));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(name: &str, value: &str) -> (u8, Vec<u8>) {
        let message = wire::parameter_status(name, value);
        (b'S', message[5..].to_vec())
    }

    #[test]
    fn the_greeting_is_redshifts_with_postgres_backend_key() {
        let postgres = vec![
            ps("server_version", "15.8 (Debian 15.8-1)"),
            ps("server_encoding", "UTF8"),
            ps("session_authorization", "redshift_backend"),
            ps("client_encoding", "UTF8"),
            (b'K', vec![0, 0, 0, 42, 1, 2, 3, 4]),
            (b'Z', b"I".to_vec()),
        ];
        let mut want = wire::message(b'R', &[0, 0, 0, 0]);
        for (name, value) in [
            ("server_version", "8.0.2"),
            ("server_encoding", "UNICODE"),
            ("session_authorization", "IAM:alice"),
            ("client_encoding", "UTF8"),
            ("padb_version", "1.0.78412"),
            ("padb_revision", "78412"),
            ("datashare_enabled", "off"),
        ] {
            want.extend(wire::parameter_status(name, value));
        }
        want.extend(wire::message(b'K', &[0, 0, 0, 42, 1, 2, 3, 4]));
        want.extend(wire::message(b'Z', b"I"));
        assert_eq!(rewrite(&postgres, "IAM:alice"), want);
    }
}
