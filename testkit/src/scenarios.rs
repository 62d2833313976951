//! Checks shared by several fault tests.

use std::time::Duration;

use ciq::queue::redis::keys::BuildKeys;

use crate::inspect::{ready_generation, results};
use crate::output::{final_lines, statuses};
use crate::processes::{Output, Proc, wait_until};
use crate::redis_server::RedisServer;
use crate::scratch::Scratch;

/// The end of a take-over over six passing tests: `late` ran `gated/victim`, lost it after
/// its heartbeat lapsed, and `taker` is running it again (gated by its `open-<taker>` file)
/// when `late` comes back. Checks that `late`'s acknowledgement changed nothing: the taker
/// keeps its lease and its running entry and no outcome is recorded; let go, the taker decides
/// the one outcome, both finish green with one take-over, and no test is counted twice.
/// Returns both outputs, `late`'s first.
pub fn assert_late_result_changes_nothing(
    server: &RedisServer,
    scratch: &Scratch,
    build: &str,
    late: Proc,
    taker: Proc,
) -> (Output, Output) {
    const VICTIM: &str = "gated/victim";
    const LONG: Duration = Duration::from_secs(120);
    wait_until("the late acknowledgement", LONG, || {
        !statuses(&late.stderr_so_far(), VICTIM).is_empty()
    });
    let generation = ready_generation(server, build).expect("a ready generation");
    let generation = BuildKeys::new("", build).generation(&generation);
    // `<lease>:<test>` entries: the late worker's was removed at the take-over, so the one left
    // is the new holder's.
    let running: Vec<String> = redis::cmd("ZRANGE")
        .arg(&generation.running)
        .arg(0)
        .arg(-1)
        .query(&mut server.conn())
        .expect("ZRANGE running");
    let held: Vec<&String> = running
        .iter()
        .filter(|entry| entry.ends_with(&format!(":{VICTIM}")))
        .collect();
    assert_eq!(held.len(), 1, "the new holder's entry stays: {running:?}");
    assert!(
        !results(server, build).contains_key(VICTIM),
        "the late result was recorded"
    );
    std::fs::write(scratch.path(&format!("open-{}", taker.name)), "").expect("open the gate");
    let taker_out = taker.wait(LONG);
    let late_out = late.wait(LONG);
    for out in [&late_out, &taker_out] {
        assert_eq!(out.code, Some(0), "{}", out.both());
        assert!(
            out.stdout
                .contains("6 tests: 6 passed; 1 taken over from lost workers"),
            "{}",
            out.both()
        );
    }
    assert_eq!(
        statuses(&late_out.stderr, VICTIM),
        ["LOST"],
        "{}",
        late_out.both()
    );
    assert_eq!(
        statuses(&taker_out.stderr, VICTIM),
        ["PASS"],
        "{}",
        taker_out.both()
    );
    let outcomes = results(server, build);
    assert_eq!(outcomes.len(), 6);
    assert_eq!(outcomes[VICTIM], "passed");
    assert_eq!(scratch.run_counts()[VICTIM], 2);
    let finals = final_lines([late_out.stderr.as_str(), taker_out.stderr.as_str()]);
    assert!(finals.values().all(|&n| n == 1), "{finals:?}");
    (late_out, taker_out)
}
