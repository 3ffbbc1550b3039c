//! Targets the proxy refuses, each with a piece of the one-line message that must say why.

use super::*;

/// (what the user wrote, a piece the message must contain)
const BAD: &[(&str, &str)] = &[
    ("", "empty target"),
    ("   ", "empty target"),
    ("postgresql://h:5439/dev", "\"postgresql\" URLs"),
    ("jdbc:postgresql://h:5439/dev", "not a Redshift JDBC URL"),
    (":5439/dev?password_env=PW", "has no host name"),
    ("alice@db.example.com/dev", "?db_user=NAME"),
    ("::1:5439?password_env=PW", "IPv6 in brackets"),
    ("[::1?password_env=PW", "IPv6 in brackets"),
    (
        "db example.com?password_env=PW",
        "\"db example.com\" is not a host",
    ),
    (
        "db.example.com:abc?password_env=PW",
        "\"abc\" after the host",
    ),
    ("db.example.com:0?password_env=PW", "\"0\" after the host"),
    ("db.example.com:70000?password_env=PW", "1 to 65535"),
    ("db.example.com?password_env=PW&port=0", "port=\"0\""),
    (
        "db.example.com/dev/x?password_env=PW",
        "\"dev/x\" is not one database",
    ),
    (
        "db.example.com?password_env=PW&dbuser=a",
        "\"dbuser\": write one of port, database",
    ),
    ("db.example.com?password=secret", "password_env=VAR"),
    ("db.example.com?password_env", "password_env has no value"),
    (
        "db.example.com?password_env=PW&db_user=al%2",
        "\"al%2\" has a bad percent escape",
    ),
    (
        "db.example.com?password_env=PW&db_user=%FF",
        "bad percent escape",
    ),
    (
        "db.example.com?password_env=PW&duration_seconds=600",
        "from 900 to 3600",
    ),
    (
        "db.example.com?password_env=PW&auto_create=maybe",
        "auto_create=\"maybe\"",
    ),
    (
        "db.example.com?password_env=PW&sslmode=prefer",
        "verify-full, verify-ca",
    ),
    (
        "db.example.com?password_env=1PW",
        "environment variable name",
    ),
    ("db.example.com/dev", "?cluster=NAME&region=REGION"),
    ("db.example.com/dev?cluster=prod", "add ?region=REGION"),
    (
        "db.example.com?cluster=prod&region=useast",
        "region \"useast\"",
    ),
    (
        "db.example.com?cluster=my_cluster&region=us-east-1",
        "identifier \"my_cluster\"",
    ),
    (VPC_ENDPOINT, "add ?workgroup=NAME"),
    (
        "db.example.com?cluster=c&workgroup=w&region=us-east-1",
        "keep only one",
    ),
    (
        "db.example.com?workgroup=Bad_WG&region=us-east-1",
        "workgroup \"Bad_WG\"",
    ),
    (
        "db.example.com?workgroup=ab&region=us-east-1",
        "3-64 lowercase",
    ),
    (
        "default.123456789012.us-east-1.redshift-serverless.amazonaws.com:6000",
        "5431-5455 or 8191-8215",
    ),
    (
        "jdbc:redshift:iam://c1:nowhere/dev",
        "\"nowhere\" after \"c1\" is not a port",
    ),
    (
        "jdbc:redshift:iam://a.b.example.com:us-east-1/dev",
        "(no dots)",
    ),
    (
        "jdbc:redshift:iam://c1:us-west-2/dev;IAMDuration=100",
        "IAMDuration=\"100\"",
    ),
    (
        "jdbc:redshift:iam://c1:us-west-2/dev?DbUser",
        "DbUser has no value",
    ),
];

/// (an endpoint, extra `[[target]]` options, a piece the message must contain)
const BAD_OPTIONS: &[(&str, Extra, &str)] = &[
    (
        PROVISIONED,
        &[("db_user", "1alice")],
        "does not start with a letter",
    ),
    (
        PROVISIONED,
        &[("db_user", "IAM:alice")],
        "contains ':' or '/'",
    ),
    (
        PROVISIONED,
        &[("db_user", "public")],
        "reserved name PUBLIC",
    ),
    (PROVISIONED, &[("db_user", LONG_USER)], "longer than 64"),
    (
        PROVISIONED,
        &[("DbUser", "alice")],
        "unknown option \"DbUser\"",
    ),
    (
        PROVISIONED,
        &[("duration_seconds", "4000")],
        "duration_seconds=\"4000\"",
    ),
    (SERVERLESS, &[("db_user", "alice")], "allowed_users=NAME"),
    (
        SERVERLESS,
        &[("db_groups", "bi")],
        "db_groups cannot be used with a serverless",
    ),
    (
        SERVERLESS,
        &[("auto_create", "true")],
        "auto_create cannot be used",
    ),
    (
        PROVISIONED,
        &[("iam_identity", "true"), ("db_user", "a")],
        "with iam_identity=true",
    ),
    (
        PROVISIONED,
        &[("iam_identity", "yes"), ("db_groups", "bi")],
        "db_groups cannot be",
    ),
    (
        PROVISIONED,
        &[("iam_identity", "1"), ("password_env", "PW")],
        "contradict",
    ),
];

/// 65 characters: one too many for a database user.
const LONG_USER: &str = "a2345678901234567890123456789012345678901234567890123456789012345";

#[test]
fn bad_targets_say_what_to_write() {
    let no_options: Extra = &[];
    let cases = BAD.iter().map(|(spec, want)| (*spec, no_options, *want));
    for (spec, extra, want) in cases.chain(BAD_OPTIONS.iter().copied()) {
        let err = Target::parse_with_options(spec, extra.iter().copied())
            .expect_err(&format!("{spec:?} with {extra:?} should be refused"));
        let message = err.to_string();
        assert!(
            message.contains(want),
            "{spec:?}: {message:?} lacks {want:?}"
        );
        assert!(
            !message.contains('\n'),
            "{spec:?}: {message:?} is not one line"
        );
    }
}
