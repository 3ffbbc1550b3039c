//! The warm-session settings: off by default, a target's option over the flag, and the
//! values refused at start-up.

use super::*;

#[test]
fn warm_sessions_default_off_and_a_target_overrides_the_setting() {
    Jail::expect_with(|_| {
        let config = ProxyConfig::load(&cli(&[STATIC])).expect("defaults");
        assert_eq!(config.targets[0].warm_sessions, 0);
        assert_eq!(config.warm, crate::upstream::warm::WarmSettings::default());
        let own = format!("{STATIC}&warm_sessions=1");
        let config = ProxyConfig::load(&cli(&[
            &own,
            STATIC,
            "--port",
            "7000",
            "--warm-sessions",
            "2",
        ]))
        .expect("override");
        assert_eq!(config.targets[0].warm_sessions, 1);
        assert_eq!(config.targets[1].warm_sessions, 2);
        for (flags, needle) in [
            (vec![STATIC, "--warm-sessions", "65"], "warm_sessions = 65"),
            (vec![STATIC, "--warm-idle", "0"], "warm_idle = 0"),
            (vec![STATIC, "--warm-max-age", "0s"], "warm_max_age = 0"),
            (vec![STATIC, "--warm-idle", "soon"], "warm_idle"),
        ] {
            let err = ProxyConfig::load(&cli(&flags)).unwrap_err().to_string();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
        let bad = format!("{STATIC}&warm_sessions=65");
        let err = ProxyConfig::load(&cli(&[&bad])).unwrap_err().to_string();
        assert!(err.contains("0 to 64"), "{err}");
        Ok(())
    });
}
