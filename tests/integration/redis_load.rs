//! How much Redis a build costs: commands per test in steady state, measured on the test's own
//! redis-server, printed as a figure and held to the budget of 1.5 per test.

use std::process::{Command, Stdio};
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, RedisServer, Scratch, ids, wait_until};

#[test]
fn redis_commands_per_test_for_500_noop_tests_on_2_workers() {
    const TESTS: usize = 500;
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("noop", TESTS));
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut server.conn())
        .unwrap();
    // MONITOR tells the commands clients send from those scripts run inside Redis ("[0 lua]").
    let monitor_log = scratch.path("monitor.log");
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "monitor"])
        .stdout(std::fs::File::create(&monitor_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli is installed with redis-server");
    wait_until("MONITOR to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&monitor_log).is_ok_and(|log| log.starts_with("OK"))
    });
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|worker| {
            let args = [
                "run",
                "--queue",
                &server.url(),
                "--build",
                "load",
                "--worker",
                worker,
                "--tests",
                &list.to_string_lossy(),
                "--batch-size",
                "1",
                "--",
                "true",
            ];
            Proc::spawn(worker, &scratch, &args.map(str::to_owned))
        })
        .collect();
    for worker in workers {
        let out = worker.wait(Duration::from_secs(300));
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stdout.contains("500 tests: 500 passed"),
            "{}",
            out.both()
        );
    }
    let stats = server.command_stats();
    // Every command before this marker is in the log once the marker is.
    const END: &str = "ciq-load-end";
    let _: String = redis::cmd("ECHO")
        .arg(END)
        .query(&mut server.conn())
        .unwrap();
    wait_until(
        "MONITOR to log the end marker",
        Duration::from_secs(30),
        || std::fs::read_to_string(&monitor_log).is_ok_and(|log| log.contains(END)),
    );
    let _ = monitor.kill();
    let _ = monitor.wait();
    let log = std::fs::read_to_string(&monitor_log).unwrap();
    // The commands before the marker's own line.
    let log = log.find(END).map_or(log.as_str(), |at| {
        log[..at].rsplit_once('\n').map_or("", |(before, _)| before)
    });
    let client_commands = log
        .lines()
        .filter(|line| line.contains(" [") && !line.contains(" lua]"))
        .filter(|line| !line.contains("\"INFO\""))
        .count();
    let calls = |name: &str| {
        stats
            .iter()
            .find(|(command, _)| command == name)
            .map_or(0, |(_, calls)| *calls)
    };
    let all: u64 = stats
        .iter()
        .filter(|(command, _)| {
            command != "info" && command != "monitor" && command != "config|resetstat"
        })
        .map(|(_, calls)| calls)
        .sum();
    let per_test = client_commands as f64 / TESTS as f64;
    println!(
        "redis load: {TESTS} no-op tests, 2 workers, batch size 1: {client_commands} commands sent by ciq = {per_test:.3} per test \
         (EVALSHA {:.3} per test); {all} commands counting those run inside scripts = {:.2} per test",
        calls("evalsha") as f64 / TESTS as f64,
        all as f64 / TESTS as f64,
    );
    println!("redis load: INFO commandstats: {stats:?}");
    assert!(
        per_test <= 1.5,
        "{per_test:.3} commands per test is over the budget of 1.5"
    );
}
