//! The Redshift and Redshift Serverless credential APIs: what they issue and how they answer
//! (awsQuery XML for `GetClusterCredentials[WithIAM]`, awsJson1_1 for serverless
//! `GetCredentials`), in the shapes the SDK parses.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use wiremock::ResponseTemplate;

use super::wire::{
    epoch_seconds, iso8601, json_response, json_string, whole_millis, whole_secs, xml_escape,
    xml_response,
};
use super::{Api, FAKE_ACCOUNT, FakeError, FakeRequest, Issued, REDSHIFT_XMLNS, State};

pub(super) fn issue(state: &mut State, request: &FakeRequest, now: SystemTime) -> Issued {
    let db_user = match request.api {
        Api::GetClusterCredentials => {
            let auto = request
                .param("AutoCreate")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let prefix = if auto { "IAMA" } else { "IAM" };
            format!("{prefix}:{}", request.param("DbUser").unwrap_or_default())
        }
        Api::GetClusterCredentialsWithIam => format!("IAM:{}", state.iam_identity),
        _ => state.serverless_db_user.clone(),
    };
    let bare = db_user.split_once(':').map_or(db_user.as_str(), |(_, b)| b);
    let password = state
        .passwords
        .get(&db_user)
        .or_else(|| state.passwords.get(bare))
        .or(state.fixed_password.as_ref())
        .cloned()
        .unwrap_or_else(|| random_password(state.counter));
    let duration_param = if request.api.is_json() {
        "durationSeconds"
    } else {
        "DurationSeconds"
    };
    let lifetime = state.lifetime.unwrap_or_else(|| {
        let secs = request
            .param(duration_param)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(900);
        Duration::from_secs(secs)
    });
    // Redshift writes milliseconds; serverless gets whole seconds (see `epoch_seconds`).
    let expiration = if request.api.is_json() {
        whole_secs(now + lifetime)
    } else {
        whole_millis(now + lifetime)
    };
    let next_refresh_time = match request.api {
        Api::GetClusterCredentials => None,
        _ => Some(expiration),
    };
    let db_name = match request.api {
        Api::ServerlessGetCredentials => request.param("dbName"),
        _ => request.param("DbName"),
    }
    .map(str::to_owned);
    Issued {
        api: request.api,
        db_user,
        password,
        expiration,
        next_refresh_time,
        db_name,
    }
}

/// A password shaped like Redshift's (base64 alphabet, including `+` and `/`).
fn random_password(n: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let random = RandomState::new();
    let mut out = String::from("Fk");
    for i in 0..5u64 {
        let mut h = random.build_hasher();
        h.write_u64(n);
        h.write_u64(i);
        let mut bits = h.finish();
        for _ in 0..8 {
            out.push(ALPHABET[(bits & 63) as usize] as char);
            bits >>= 6;
        }
    }
    out
}

pub(super) fn success(
    request: &FakeRequest,
    issued: &Issued,
    request_id: &str,
) -> ResponseTemplate {
    match request.api {
        Api::ServerlessGetCredentials => {
            let mut body = format!(
                "{{\"dbUser\":{},\"dbPassword\":{},\"expiration\":{}",
                json_string(&issued.db_user),
                json_string(&issued.password),
                epoch_seconds(issued.expiration)
            );
            if let Some(next) = issued.next_refresh_time {
                body.push_str(&format!(",\"nextRefreshTime\":{}", epoch_seconds(next)));
            }
            body.push('}');
            json_response(200, body, request_id)
        }
        api => {
            let name = if api == Api::GetClusterCredentials {
                "GetClusterCredentials"
            } else {
                "GetClusterCredentialsWithIAM"
            };
            let mut result = format!(
                "    <DbUser>{}</DbUser>\n    <DbPassword>{}</DbPassword>\n    <Expiration>{}</Expiration>\n",
                xml_escape(&issued.db_user),
                xml_escape(&issued.password),
                iso8601(issued.expiration)
            );
            if let Some(next) = issued.next_refresh_time {
                result.push_str(&format!(
                    "    <NextRefreshTime>{}</NextRefreshTime>\n",
                    iso8601(next)
                ));
            }
            let body = format!(
                "<{name}Response xmlns=\"{REDSHIFT_XMLNS}\">\n  <{name}Result>\n{result}  </{name}Result>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{name}Response>\n"
            );
            xml_response(200, body, request_id)
        }
    }
}

pub(super) fn unknown_operation(request: &FakeRequest) -> FakeError {
    let name = request
        .header("x-amz-target")
        .or(request.param("Action"))
        .unwrap_or("(none)");
    if request.header("x-amz-target").is_some() {
        FakeError::Custom {
            status: 400,
            code: "UnknownOperationException".to_owned(),
            message: format!("The fake does not implement {name}"),
        }
    } else {
        FakeError::Custom {
            status: 400,
            code: "InvalidAction".to_owned(),
            message: format!("The action {name} is not valid for this web service."),
        }
    }
}

fn denied_resource(request: &FakeRequest) -> String {
    let region = request.signing_region().unwrap_or("us-east-1");
    match request.api {
        Api::GetClusterCredentials => format!(
            "arn:aws:redshift:{region}:{FAKE_ACCOUNT}:dbuser:{}/{}",
            request.param("ClusterIdentifier").unwrap_or_default(),
            request.param("DbUser").unwrap_or_default()
        ),
        Api::GetClusterCredentialsWithIam => format!(
            "arn:aws:redshift:{region}:{FAKE_ACCOUNT}:dbname:{}/{}",
            request.param("ClusterIdentifier").unwrap_or_default(),
            request.param("DbName").unwrap_or("dev")
        ),
        _ => format!(
            "arn:aws:redshift-serverless:{region}:{FAKE_ACCOUNT}:workgroup/{}",
            request.param("workgroupName").unwrap_or_default()
        ),
    }
}

pub(super) fn failure(
    request: &FakeRequest,
    error: &FakeError,
    request_id: &str,
) -> ResponseTemplate {
    let json = request.api.is_json()
        || (request.api == Api::Unknown && request.header("x-amz-target").is_some());
    let denied = || {
        format!(
            "User: arn:aws:iam::{FAKE_ACCOUNT}:user/test is not authorized to perform: {} on resource: {}",
            request.api.iam_action(),
            denied_resource(request)
        )
    };
    let (status, code, message) = match (error, json) {
        (FakeError::Throttling, false) => {
            (400, "Throttling".to_owned(), "Rate exceeded".to_owned())
        }
        (FakeError::Throttling, true) => (
            400,
            "ThrottlingException".to_owned(),
            "Rate exceeded".to_owned(),
        ),
        (FakeError::AccessDenied, false) => (403, "AccessDenied".to_owned(), denied()),
        (FakeError::AccessDenied, true) => (400, "AccessDeniedException".to_owned(), denied()),
        (FakeError::NotFound, false) => (
            400,
            "ClusterNotFound".to_owned(),
            format!(
                "Cluster {} not found.",
                request.param("ClusterIdentifier").unwrap_or_default()
            ),
        ),
        (FakeError::NotFound, true) => (
            400,
            "ResourceNotFoundException".to_owned(),
            format!(
                "Workgroup {} not found.",
                request.param("workgroupName").unwrap_or_default()
            ),
        ),
        (FakeError::Internal, false) => (
            500,
            "InternalFailure".to_owned(),
            "An internal error has occurred. Please try again later.".to_owned(),
        ),
        (FakeError::Internal, true) => (
            500,
            "InternalServerException".to_owned(),
            "An internal error has occurred. Please try again later.".to_owned(),
        ),
        (
            FakeError::Custom {
                status,
                code,
                message,
            },
            _,
        ) => (*status, code.clone(), message.clone()),
    };
    if json {
        let body = format!(
            "{{\"__type\":{},\"message\":{}}}",
            json_string(&code),
            json_string(&message)
        );
        json_response(status, body, request_id).insert_header("x-amzn-ErrorType", code.as_str())
    } else {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        let body = format!(
            "<ErrorResponse xmlns=\"{REDSHIFT_XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_escape(&code),
            xml_escape(&message)
        );
        xml_response(status, body, request_id)
    }
}
