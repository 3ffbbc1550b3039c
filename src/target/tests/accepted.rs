//! Targets the proxy accepts, each with the fields it must parse to.

use super::*;

/// (what the user wrote, extra `[[target]]` options, the target it means)
fn good_cases() -> Vec<(String, Extra, Target)> {
    let provisioned = || base(PROVISIONED, cluster("examplecluster"), Some("us-west-2"));
    let serverless = || Target {
        account: some("123456789012"),
        ..base(SERVERLESS, workgroup("default"), Some("us-east-1"))
    };
    vec![
        // Serverless: everything from the name.
        (SERVERLESS.to_owned(), &[], serverless()),
        // Serverless on another allowed port, with a database.
        (
            format!("{SERVERLESS}:8192/dev"),
            &[],
            Target {
                upstream_port: 8192,
                database: some("dev"),
                ..serverless()
            },
        ),
        // A provisioned cluster with a database, a fixed user and groups.
        (
            format!("{PROVISIONED}/dev?db_user=analyst&db_groups=bi,readers"),
            &[],
            Target {
                database: some("dev"),
                db_user: some("analyst"),
                db_groups: strings(&["bi", "readers"]),
                ..provisioned()
            },
        ),
        // Host matching ignores case; the cluster identifier keeps it.
        (
            "ExampleCluster.ABC123.US-WEST-2.Redshift.AmazonAWS.com:5440".to_owned(),
            &[],
            Target {
                upstream_port: 5440,
                ..base(
                    "ExampleCluster.ABC123.US-WEST-2.Redshift.AmazonAWS.com",
                    cluster("ExampleCluster"),
                    Some("us-west-2"),
                )
            },
        ),
        // Serverless VPC endpoint: the workgroup comes from the option.
        (
            format!("{VPC_ENDPOINT}:5439/dev?workgroup=analytics"),
            &[],
            Target {
                database: some("dev"),
                account: some("123456789012"),
                ..base(VPC_ENDPOINT, workgroup("analytics"), Some("eu-west-1"))
            },
        ),
        // China regions.
        (
            "c1.xyz789.cn-north-1.redshift.amazonaws.com.cn".to_owned(),
            &[],
            base(
                "c1.xyz789.cn-north-1.redshift.amazonaws.com.cn",
                cluster("c1"),
                Some("cn-north-1"),
            ),
        ),
        (
            "wg1.123456789012.cn-northwest-1.redshift-serverless.amazonaws.com.cn".to_owned(),
            &[],
            Target {
                account: some("123456789012"),
                ..base(
                    "wg1.123456789012.cn-northwest-1.redshift-serverless.amazonaws.com.cn",
                    workgroup("wg1"),
                    Some("cn-northwest-1"),
                )
            },
        ),
        // -dev service names.
        (
            "c1.h.us-east-1.redshift-dev.amazonaws.com".to_owned(),
            &[],
            base(
                "c1.h.us-east-1.redshift-dev.amazonaws.com",
                cluster("c1"),
                Some("us-east-1"),
            ),
        ),
        (
            "wg-dev.123456789012.us-east-1.redshift-serverless-dev.amazonaws.com".to_owned(),
            &[],
            Target {
                account: some("123456789012"),
                ..base(
                    "wg-dev.123456789012.us-east-1.redshift-serverless-dev.amazonaws.com",
                    workgroup("wg-dev"),
                    Some("us-east-1"),
                )
            },
        ),
        // Custom domains name the cluster or workgroup and the region.
        (
            "db.example.com:5439/dev?cluster=prod&region=us-east-1&custom_domain=db.example.com"
                .to_owned(),
            &[],
            Target {
                database: some("dev"),
                custom_domain: some("db.example.com"),
                ..base("db.example.com", cluster("prod"), Some("us-east-1"))
            },
        ),
        (
            "sl.example.com?workgroup=analytics&region=eu-central-1".to_owned(),
            &[],
            base("sl.example.com", workgroup("analytics"), Some("eu-central-1")),
        ),
        // Options override what the name says.
        (
            format!("{PROVISIONED}?cluster=other&region=eu-west-1"),
            &[],
            base(PROVISIONED, cluster("other"), Some("eu-west-1")),
        ),
        // JDBC with the full host name, with and without the IAM plugin.
        (
            "jdbc:redshift:iam://other.def456.eu-west-1.redshift.amazonaws.com:5439/prod"
                .to_owned(),
            &[],
            Target {
                database: some("prod"),
                ..base(
                    "other.def456.eu-west-1.redshift.amazonaws.com",
                    cluster("other"),
                    Some("eu-west-1"),
                )
            },
        ),
        (
            format!("jdbc:redshift://{SERVERLESS}:5439/dev"),
            &[],
            Target {
                database: some("dev"),
                ..serverless()
            },
        ),
        // JDBC short forms: no host, so host is the cluster or workgroup name.
        (
            "jdbc:redshift:iam://examplecluster:us-west-2/dev".to_owned(),
            &[],
            Target {
                database: some("dev"),
                lookup_endpoint: true,
                ..base("examplecluster", cluster("examplecluster"), Some("us-west-2"))
            },
        ),
        (
            "JDBC:Redshift:IAM://redshift-serverless-analytics:eu-central-1/dev".to_owned(),
            &[],
            Target {
                database: some("dev"),
                lookup_endpoint: true,
                ..base("analytics", workgroup("analytics"), Some("eu-central-1"))
            },
        ),
        // `;` properties, driver aliases case-insensitively, other driver properties ignored.
        (
            format!(
                "jdbc:redshift:iam://{PROVISIONED}:5439/dev;DbUser=alice;DBGROUPS=a,b;AutoCreate=true;ssl=true;UID=x;plugin_name=com.amazon.redshift.plugin.X"
            ),
            &[],
            Target {
                database: some("dev"),
                db_user: some("alice"),
                db_groups: strings(&["a", "b"]),
                auto_create: true,
                ..provisioned()
            },
        ),
        // `?` properties, aliases naming cluster and region on a custom domain.
        (
            "jdbc:redshift:iam://db.example.com:5439/dev?ClusterID=prod&Region=us-east-1&IAMDuration=3600&groupfederation=true&loginTimeout=5"
                .to_owned(),
            &[],
            Target {
                database: some("dev"),
                duration_seconds: 3600,
                iam_identity: true,
                ..base("db.example.com", cluster("prod"), Some("us-east-1"))
            },
        ),
        // Percent-decoding in path and values; %2C separates list items.
        (
            format!("{PROVISIONED}/my%20db?db_user=al%40ice&db_groups=bi%2Creaders&allowed_users=a%2Bb"),
            &[],
            Target {
                database: some("my db"),
                db_user: some("al@ice"),
                db_groups: strings(&["bi", "readers"]),
                allowed_users: strings(&["a+b"]),
                ..provisioned()
            },
        ),
        // `[[target]]` options override the query string.
        (
            format!("{PROVISIONED}/dev?db_user=alice&duration_seconds=1200&port=6000"),
            &[
                ("db_user", "bob"),
                ("db_groups", "bi,readers"),
                ("port", "6001"),
                ("duration_seconds", "3600"),
                ("sslmode", "verify-ca"),
                ("auto_create", "yes"),
                ("database", "prod"),
            ],
            Target {
                database: some("prod"),
                listen_port: Some(6001),
                db_user: some("bob"),
                db_groups: strings(&["bi", "readers"]),
                auto_create: true,
                duration_seconds: 3600,
                sslmode: Some(SslMode::VerifyCa),
                ..provisioned()
            },
        ),
        // Config options apply to JDBC specs too.
        (
            "jdbc:redshift:iam://examplecluster:us-west-2/dev".to_owned(),
            &[("iam_identity", "true"), ("allowed_users", "alice, bob")],
            Target {
                database: some("dev"),
                iam_identity: true,
                allowed_users: strings(&["alice", "bob"]),
                lookup_endpoint: true,
                ..base("examplecluster", cluster("examplecluster"), Some("us-west-2"))
            },
        ),
        // Static password mode needs no AWS names at all.
        (
            "db.example.com:5439/dev?db_user=alice&password_env=PW".to_owned(),
            &[],
            Target {
                database: some("dev"),
                db_user: some("alice"),
                password_env: some("PW"),
                ..base("db.example.com", TargetKind::Unknown, None)
            },
        ),
        // ... also on a VPC endpoint, keeping what the name says.
        (
            format!("{VPC_ENDPOINT}?password_env=PW"),
            &[],
            Target {
                account: some("123456789012"),
                password_env: some("PW"),
                ..base(VPC_ENDPOINT, TargetKind::Unknown, Some("eu-west-1"))
            },
        ),
        // IPv6 and IPv4 literals.
        (
            "[::1]:15439/dev?password_env=PW&sslmode=disable".to_owned(),
            &[],
            Target {
                upstream_port: 15439,
                database: some("dev"),
                password_env: some("PW"),
                sslmode: Some(SslMode::Disable),
                ..base("::1", TargetKind::Unknown, None)
            },
        ),
        (
            "127.0.0.1:6543?password_env=PW&port=7000".to_owned(),
            &[],
            Target {
                upstream_port: 6543,
                listen_port: Some(7000),
                password_env: some("PW"),
                ..base("127.0.0.1", TargetKind::Unknown, None)
            },
        ),
        // The database option overrides the path; trailing `&` is harmless.
        (
            format!("{PROVISIONED}/dev?database=prod&iam_identity=1&"),
            &[],
            Target {
                database: some("prod"),
                iam_identity: true,
                ..provisioned()
            },
        ),
    ]
}

#[test]
fn good_targets_parse_to_the_expected_fields() {
    for (spec, extra, want) in good_cases() {
        let got = Target::parse_with_options(&spec, extra.iter().copied());
        assert_eq!(got.as_ref(), Ok(&want), "{spec} with {extra:?}");
    }
}
