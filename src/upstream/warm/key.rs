//! What a spare session must share with a client to be handed to it. Every startup parameter
//! is a session setting (`application_name`, `search_path` in `options`, a driver's
//! `client_protocol_version`, which changes what the server sends), and the database user and
//! database decide whose session it is, so all of them are the key; the target is implied,
//! since each target has its own pool.

use crate::credentials::CredentialRequest;

/// The database user, the database and the complete set of the client's startup
/// parameters (as a set: their order does not change the session).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WarmKey {
    request: CredentialRequest,
    params: Vec<(String, String)>,
}

impl WarmKey {
    /// The key of a client that sent `params` and logs in as `request` says.
    pub fn new(request: &CredentialRequest, params: &[(String, String)]) -> WarmKey {
        let mut params = params.to_vec();
        params.sort();
        WarmKey {
            request: request.clone(),
            params,
        }
    }

    /// The credentials a spare for this key logs in with.
    pub fn request(&self) -> &CredentialRequest {
        &self.request
    }

    /// The client's startup parameters, sorted by name.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str, database: &str) -> CredentialRequest {
        CredentialRequest {
            db_user: Some(user.to_owned()),
            database: database.to_owned(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn order_of_parameters_does_not_matter() {
        let a = params(&[("user", "alice"), ("application_name", "tableau")]);
        let b = params(&[("application_name", "tableau"), ("user", "alice")]);
        assert_eq!(
            WarmKey::new(&request("alice", "dev"), &a),
            WarmKey::new(&request("alice", "dev"), &b)
        );
    }

    #[test]
    fn any_difference_is_another_key() {
        let base = params(&[("user", "alice"), ("application_name", "tableau")]);
        let key = WarmKey::new(&request("alice", "dev"), &base);
        let other_app = params(&[("user", "alice"), ("application_name", "psql")]);
        let extra = params(&[
            ("user", "alice"),
            ("application_name", "tableau"),
            ("options", "-c search_path=x"),
        ]);
        assert_ne!(key, WarmKey::new(&request("alice", "dev"), &other_app));
        assert_ne!(key, WarmKey::new(&request("alice", "dev"), &extra));
        assert_ne!(key, WarmKey::new(&request("bob", "dev"), &base));
        assert_ne!(key, WarmKey::new(&request("alice", "prod"), &base));
    }
}
