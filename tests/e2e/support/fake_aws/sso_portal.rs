//! The IAM Identity Center portal's `GetRoleCredentials` (restJson:
//! `GET /federation/credentials?account_id=…&role_name=…` with the access token of a signed-in
//! session in `x-amz-sso_bearer_token`, unsigned), answered with
//! `{"roleCredentials":{…,"expiration":<epoch millis>}}`, and its refusal of a token whose
//! session has ended: HTTP 401, `x-amzn-ErrorType: UnauthorizedException`,
//! `{"message":"Session token not found or invalid"}`.

use std::time::{SystemTime, UNIX_EPOCH};

use wiremock::ResponseTemplate;

use super::wire::json_string;
use super::{FakeRequest, State, new_aws_keys};

/// The answer to a `GetRoleCredentials` call.
pub(super) fn answer(
    state: &mut State,
    request: &FakeRequest,
    now: SystemTime,
    request_id: &str,
) -> ResponseTemplate {
    let token = request.sso_bearer_token().unwrap_or_default();
    if token.is_empty() || state.sso_refused.contains(token) {
        return refusal(
            401,
            "UnauthorizedException",
            "Session token not found or invalid",
            request_id,
        );
    }
    let role_name = request.param("role_name").unwrap_or_default().to_owned();
    let keys = new_aws_keys(state, request.api, &role_name, now);
    let millis = keys
        .expiration
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let body = format!(
        "{{\"roleCredentials\":{{\"accessKeyId\":{},\"secretAccessKey\":{},\"sessionToken\":{},\"expiration\":{millis}}}}}",
        json_string(&keys.access_key_id),
        json_string(&keys.secret_access_key),
        json_string(&keys.session_token),
    );
    ResponseTemplate::new(200)
        .insert_header("x-amzn-RequestId", request_id)
        .set_body_raw(body, "application/json")
}

fn refusal(status: u16, code: &str, message: &str, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-RequestId", request_id)
        .insert_header(
            "x-amzn-ErrorType",
            format!("{code}:http://internal.amazon.com/coral/com.amazon.switchboard.portal/")
                .as_str(),
        )
        .set_body_raw(
            format!("{{\"message\":{}}}", json_string(message)),
            "application/json",
        )
}
