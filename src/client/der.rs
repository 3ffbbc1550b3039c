//! The little DER reading the client side needs from certificates it already trusts: the
//! subject's CN for `--client-auth cert` and the signature algorithm for SCRAM channel
//! binding. Elements are walked, not decoded: anything unexpected is `None`, never a guess.

/// SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;
/// SET.
pub(crate) const SET: u8 = 0x31;
/// OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// The explicit `[0]` version tag of a TBSCertificate.
pub(crate) const VERSION: u8 = 0xa0;
/// INTEGER.
pub(crate) const INTEGER: u8 = 0x02;

/// One DER element: its tag, its contents and what follows it.
pub(crate) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags do not occur on the way to the subject
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of an element with tag `want`, and what follows it.
pub(crate) fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    match element(input)? {
        (tag, contents, rest) if tag == want => Some((contents, rest)),
        _ => None,
    }
}
