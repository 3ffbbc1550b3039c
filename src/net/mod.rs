//! Plumbing both sides of a session share: the framed connection every exchange before the
//! relay goes through, the plain-or-TLS stream, and the TLS crypto provider and certificate
//! files.

pub mod crypto;
pub mod either;
pub mod pg_stream;
