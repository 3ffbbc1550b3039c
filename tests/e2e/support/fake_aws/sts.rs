//! STS `AssumeRole` and `AssumeRoleWithWebIdentity` (awsQuery: a form-encoded `POST /` with
//! `Action=…&Version=2011-06-15`, answered with XML in the namespace
//! `https://sts.amazonaws.com/doc/2011-06-15/`), handing out AWS keys the fake recognises, and
//! STS's refusals in its `<ErrorResponse>` shape.

use std::time::SystemTime;

use wiremock::ResponseTemplate;

use super::wire::{iso8601_secs, xml_escape, xml_response};
use super::{Api, AwsKeys, FAKE_ACCOUNT, FakeRequest, State, new_aws_keys};

/// The awsQuery namespace of the STS API.
pub const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// How STS refuses, until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsFailure {
    /// HTTP 403 `AccessDenied`: for `AssumeRole` "User: CALLER is not authorized to perform:
    /// sts:AssumeRole on resource: ROLE" (the caller as STS names the signing key's owner),
    /// for `AssumeRoleWithWebIdentity` "Not authorized to perform
    /// sts:AssumeRoleWithWebIdentity", as STS words them.
    AccessDenied,
    /// HTTP 400 `InvalidIdentityToken` (web identity: issuer or signature not trusted).
    InvalidIdentityToken,
    /// HTTP 400 `ExpiredTokenException` (web identity: the token's `exp` has passed).
    ExpiredWebIdentityToken,
}

/// The answer to an STS call.
pub(super) fn answer(
    state: &mut State,
    request: &FakeRequest,
    now: SystemTime,
    request_id: &str,
) -> ResponseTemplate {
    let role_arn = request.param("RoleArn").unwrap_or_default().to_owned();
    if let Some(failure) = state.sts_failure.clone() {
        let caller = caller_arn(state, request.access_key_id());
        return refusal(request, &failure, &role_arn, &caller, request_id);
    }
    let keys = new_aws_keys(state, request.api, &role_arn, now);
    let session = request.param("RoleSessionName").unwrap_or_default();
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let name = if request.api == Api::StsAssumeRole {
        "AssumeRole"
    } else {
        "AssumeRoleWithWebIdentity"
    };
    let web_identity = if request.api == Api::StsAssumeRoleWithWebIdentity {
        format!(
            "    <SubjectFromWebIdentityToken>system:serviceaccount:default:proxy</SubjectFromWebIdentityToken>\n    <Audience>sts.amazonaws.com</Audience>\n    <Provider>arn:aws:iam::{FAKE_ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/FAKE</Provider>\n"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<{name}Response xmlns=\"{STS_XMLNS}\">\n  <{name}Result>\n{web_identity}    <AssumedRoleUser>\n      <AssumedRoleId>AROAFAKEROLEID:{session}</AssumedRoleId>\n      <Arn>arn:aws:sts::{FAKE_ACCOUNT}:assumed-role/{role_name}/{session}</Arn>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n  </{name}Result>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{name}Response>\n",
        keys.access_key_id,
        keys.secret_access_key,
        keys.session_token,
        iso8601_secs(keys.expiration),
        session = xml_escape(session),
        role_name = xml_escape(role_name),
    );
    xml_response(200, body, request_id)
}

/// Who signed, as STS names a caller in a denial: an assumed role for keys the fake issued
/// from STS, else an IAM user named after the access key id.
fn caller_arn(state: &State, access_key_id: Option<&str>) -> String {
    let Some(akid) = access_key_id else {
        return "anonymous".to_owned();
    };
    let issued: Option<&AwsKeys> = state.aws_keys.iter().find(|k| k.access_key_id == akid);
    match issued {
        Some(keys) if keys.api != Api::SsoGetRoleCredentials => {
            let role_name = keys.role.rsplit('/').next().unwrap_or_default();
            format!("arn:aws:sts::{FAKE_ACCOUNT}:assumed-role/{role_name}/session")
        }
        Some(keys) => format!(
            "arn:aws:sts::{FAKE_ACCOUNT}:assumed-role/AWSReservedSSO_{}_fake/user",
            keys.role
        ),
        None => format!("arn:aws:iam::{FAKE_ACCOUNT}:user/owner-of-{akid}"),
    }
}

fn refusal(
    request: &FakeRequest,
    failure: &StsFailure,
    role_arn: &str,
    caller: &str,
    request_id: &str,
) -> ResponseTemplate {
    let (status, code, message) = match (failure, request.api) {
        (StsFailure::AccessDenied, Api::StsAssumeRole) => (
            403,
            "AccessDenied",
            format!(
                "User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        ),
        (StsFailure::AccessDenied, _) => (
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity".to_owned(),
        ),
        (StsFailure::InvalidIdentityToken, _) => (
            400,
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/FAKE".to_owned(),
        ),
        (StsFailure::ExpiredWebIdentityToken, _) => (
            400,
            "ExpiredTokenException",
            "Token expired: current date/time 1765000000 must be before the expiration date/time 1764990000".to_owned(),
        ),
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_XMLNS}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(&message)
    );
    xml_response(status, body, request_id)
}
