//! Command lines for `ciq run` and `ciq report`, with the fast timings tests use.

use std::path::Path;

use crate::processes::record_test;
use crate::proxy::FaultProxy;
use crate::redis_server::TestRedis;

/// Fast timings for tests: short heartbeats and lock TTL, so faults resolve in seconds.
pub fn fast_flags() -> Vec<String> {
    [
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-timeout",
        "1500ms",
        "--lock-ttl",
        "900ms",
        "--redis-timeout",
        "10s",
        "--queue-init-timeout",
        "60s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// `ciq run` arguments for one worker of `build`.
pub fn worker_args(
    server: &impl TestRedis,
    build: &str,
    worker: &str,
    tests: &Path,
) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--queue".to_owned(),
        server.queue_url(),
        "--build".to_owned(),
        build.to_owned(),
        "--worker".to_owned(),
        worker.to_owned(),
        "--tests".to_owned(),
        tests.to_string_lossy().into_owned(),
    ];
    args.extend(fast_flags());
    args
}

/// `args` with `flag` and its value replaced by `by`, a flag and its value.
pub fn replace_flag(mut args: Vec<String>, flag: &str, by: [String; 2]) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.splice(at..at + 2, by);
    args
}

/// `args` with its `--queue` URL replaced by `proxy`'s, so the process talks to Redis through it.
pub fn through(args: Vec<String>, proxy: &FaultProxy) -> Vec<String> {
    replace_flag(args, "--queue", ["--queue".to_owned(), proxy.url()])
}

/// `args` listing tests with `command` (on the leader) instead of reading `--tests`.
pub fn with_list_command(args: Vec<String>, command: String) -> Vec<String> {
    replace_flag(args, "--tests", ["--list-command".to_owned(), command])
}

/// `ciq report` arguments for `build`.
pub fn report_args(server: &impl TestRedis, build: &str) -> Vec<String> {
    vec![
        "report".to_owned(),
        "--queue".to_owned(),
        server.queue_url(),
        "--build".to_owned(),
        build.to_owned(),
        "--redis-timeout".to_owned(),
        "10s".to_owned(),
        "--queue-init-timeout".to_owned(),
        "60s".to_owned(),
        "--report-timeout".to_owned(),
        "120s".to_owned(),
    ]
}

/// Appends `-- record-test`.
pub fn with_command(mut args: Vec<String>) -> Vec<String> {
    args.push("--".to_owned());
    args.push(record_test());
    args
}
