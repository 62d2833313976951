//! `ciq report --html` and `ciq run --html` on real builds, loaded in headless Chromium: the
//! Rust producer's page (src/report/html.rs) of a build through Redis with four worker
//! processes, one SIGKILLed mid-test, a flaky test, a failure and a long tail, checked as a
//! person would look at it, against the `--json` document and the runs the test command
//! logged. Its screenshot is the README's picture: `CIQ_UPDATE_SCREENSHOT=1 cargo test --test
//! integration html_report_of_a_real_build` writes `docs/report.png`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Browser, Element, LoadedPage, PageLoad, Proc, RedisServer, Scratch, kill_the_holder,
    report_args, repository, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(180);

/// The data the page was filled with, read back as the page reads it.
fn data_of(page: &Path) -> Value {
    let html = std::fs::read_to_string(page).unwrap();
    let open = "<script type=\"application/json\" id=\"ciq-data\">";
    let start = html.find(open).expect("the data element") + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).expect("the data is JSON")
}

fn load(page: &Path, fragment: Option<String>, screenshot: Option<&Path>) -> LoadedPage {
    let loaded = Browser::find().load(
        page,
        &PageLoad {
            fragment,
            screenshot: screenshot.map(Path::to_owned),
            window: (1400, 900),
            ..PageLoad::default()
        },
    );
    assert!(
        loaded.console.is_empty(),
        "the page wrote to the console: {:#?}",
        loaded.console
    );
    let body = Element::all(&loaded.dom, "data-ready=").remove(0);
    assert_eq!(
        body.attr("data-ready"),
        "1",
        "the page did not finish drawing: {:?}",
        body.attrs.get("data-error")
    );
    loaded
}

fn lanes(page: &LoadedPage) -> Vec<Element> {
    Element::all(&page.dom, "data-lane=\"worker\"")
}

/// The suite: a test its worker is killed in, a flaky one, a failing one, short passing ones,
/// and two long ones last in the list (the tail).
fn suite() -> Vec<String> {
    let mut tests = vec![
        "gated/victim".to_owned(),
        "flaky/net/retry_backoff".to_owned(),
        "fail/math/divide_by_zero".to_owned(),
    ];
    for n in 0..28 {
        tests.push(format!("pass/api/case_{n:02}@{}", 150 + (n * 37) % 300));
    }
    tests.push("pass/db/migrations_long@2500".to_owned());
    tests.push("pass/ui/render_all@1800".to_owned());
    tests
}

#[test]
fn html_report_of_a_real_build() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "picture";
    let list = scratch.tests(&suite());
    let names = ["ci-1", "ci-2", "ci-3", "ci-4"];
    let workers: Vec<Proc> = names
        .iter()
        .map(|name| {
            let mut args = worker_args(&server, build, name, &list);
            args.extend(["--batch-size", "1"].map(str::to_owned));
            Proc::spawn(name, &scratch, &with_command(args))
        })
        .collect();
    let (holder, survivors) = kill_the_holder(&scratch, workers, "gated/victim", LONG);
    for proc in survivors {
        let out = proc.wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    // The killed worker's orphaned run may end now.
    std::fs::write(scratch.path(&format!("open-{holder}")), "").unwrap();

    let page = scratch.path("report.html");
    let json = scratch.path("report.json");
    let trace = scratch.path("trace.json");
    let mut args = report_args(&server, build);
    for (flag, path) in [("--html", &page), ("--json", &json), ("--trace", &trace)] {
        args.extend([flag.to_owned(), path.to_string_lossy().into_owned()]);
    }
    let out = Proc::spawn("report", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("wrote the HTML report"),
        "{}",
        out.both()
    );

    let data = data_of(&page);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        data["summary"]["counts"], doc["counts"],
        "the same counts as --json"
    );
    assert_eq!(data["summary"]["verdict"], doc["verdict"]);
    assert_eq!(data["detail"], "full");
    assert_eq!(
        data["settings"]["heartbeat_timeout_ms"], 1500,
        "the build's, why the take-over came when it did"
    );

    let shot = match std::env::var_os("CIQ_UPDATE_SCREENSHOT") {
        Some(_) => repository().join("docs/report.png"),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report-real.png"),
    };
    let _ = std::fs::remove_file(&shot);
    let loaded = load(&page, None, Some(&shot));

    // One lane per worker process, in the data's order, each holding its attempts.
    let lanes = lanes(&loaded);
    let ids: Vec<&str> = lanes.iter().map(|l| l.attr("data-worker")).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, names, "one lane per worker process");
    let runs = scratch.runs();
    for lane in &lanes {
        let worker = lane.attr("data-worker");
        let ran = runs.iter().filter(|(w, _)| w == worker).count() as u64;
        assert_eq!(
            lane.number("data-attempts"),
            ran,
            "{worker}: a bar per run it made"
        );
        assert_eq!(
            lane.number("data-bars"),
            ran,
            "{worker}: full detail, a bar each"
        );
    }
    // Every attempt: the --json document's (each test's runs) and the one cut off by the kill.
    let attempts: u64 = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attempts"].as_u64().unwrap())
        .sum();
    let drawn: u64 = lanes.iter().map(|l| l.number("data-attempts")).sum();
    assert_eq!(
        drawn,
        attempts + doc["counts"]["taken_over"].as_u64().unwrap()
    );
    assert_eq!(drawn, runs.len() as u64);

    // The killed worker: gone silent, its test cut off and taken over, an arrow to the taker.
    let killed = lanes
        .iter()
        .find(|l| l.attr("data-worker") == holder)
        .unwrap();
    assert_eq!(killed.attr("data-leave"), "silent");
    assert_eq!(killed.number("data-lost"), 1);
    assert_eq!(killed.number("data-taken-from"), 1);
    let taken: u64 = lanes.iter().map(|l| l.number("data-takeovers")).sum();
    assert_eq!(taken, 1);
    let card = Element::by_id(&loaded.dom, "timeline-card").unwrap();
    assert_eq!(card.number("data-takeover-arrows"), 1);
    let requeues: u64 = lanes.iter().map(|l| l.number("data-requeues")).sum();
    assert_eq!(requeues, doc["counts"]["requeued"].as_u64().unwrap());
    let leader = Element::all(&loaded.dom, "data-lane=\"leader\"").remove(0);
    assert_eq!(leader.number("data-commit"), 1);
    assert!(leader.number("data-elections") >= 1);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot"
    );

    // The failure's output, one fragment away.
    let failing = &data["summary"]["failing"][0];
    assert_eq!(failing["id"], "fail/math/divide_by_zero");
    let attempt = failing["attempt"].as_u64().expect("the failing attempt");
    let loaded = load(&page, Some(format!("attempt={attempt}")), None);
    assert_eq!(
        Element::by_id(&loaded.dom, "attempt-test")
            .unwrap()
            .text(&loaded.dom),
        "fail/math/divide_by_zero"
    );
    let output = Element::by_id(&loaded.dom, "attempt-output")
        .unwrap()
        .text(&loaded.dom);
    assert!(
        output.contains("fail/math/divide_by_zero failed on"),
        "{output}"
    );

    // The trace: a slice per attempt on a process per worker.
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let slices = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"] == 1)
        .count();
    assert_eq!(slices as u64, drawn);
    let processes = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .count();
    assert_eq!(processes, names.len());
}

/// A test id holding markup that would change the page's title if it ever ran.
const HOSTILE: &str = "pass/</script><script>document.title='pwned'</script>&amp;\"q\"";

#[test]
fn html_report_of_a_local_run() {
    let scratch = Scratch::new();
    let tests: Vec<String> = (0..12)
        .map(|n| format!("pass/p{n}@{}", 50 + n * 20))
        .chain([
            "fail/f".to_owned(),
            "flaky/x".to_owned(),
            HOSTILE.to_owned(),
        ])
        .collect();
    let list = scratch.tests(&tests);
    let page = scratch.path("local.html");
    let trace = scratch.path("local-trace.json");
    let args: Vec<String> = [
        "run",
        "-j",
        "3",
        "--tests",
        &list.to_string_lossy(),
        "--html",
        &page.to_string_lossy(),
        "--trace",
        &trace.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = Proc::spawn("local", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let data = data_of(&page);
    assert_eq!(data["summary"]["counts"]["failed"], 1);
    assert_eq!(data["summary"]["counts"]["flaky"], 1);
    assert!(data["tests"].as_array().unwrap().contains(&HOSTILE.into()));
    let loaded = load(&page, None, None);
    // Had it run, it would have set the title or left a script element of its own.
    let title = Element::all(&loaded.dom, "<title").remove(0);
    assert!(
        !title.text(&loaded.dom).contains("pwned"),
        "markup in an id never runs"
    );
    assert_eq!(
        loaded.dom.matches("<script").count(),
        2,
        "only the data and the page's script"
    );
    let lanes = lanes(&loaded);
    assert_eq!(lanes.len(), 3, "a lane per local worker");
    let drawn: u64 = lanes.iter().map(|l| l.number("data-attempts")).sum();
    assert_eq!(drawn, scratch.runs().len() as u64, "a bar per run");
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let slices = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"] == 1)
        .count();
    assert_eq!(slices as u64, drawn);
}

#[test]
fn html_and_trace_outputs_are_refused_at_the_start() {
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned()]);
    for flag in ["--html", "--trace"] {
        let args: Vec<String> = [
            "run",
            "--tests",
            &list.to_string_lossy(),
            flag,
            "no-such-dir/out",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let out = Proc::spawn("refused", &scratch, &with_command(args)).wait(LONG);
        assert_ne!(out.code, Some(0), "{}", out.both());
        assert!(
            out.stderr.contains(&format!(
                "{flag} (CIQ_RUN_{}) `no-such-dir/out`: the directory `no-such-dir` does not exist",
                &flag[2..].to_uppercase()
            )),
            "{}",
            out.both()
        );
        assert!(scratch.runs().is_empty(), "nothing ran");
    }
    let args: Vec<String> = [
        "run",
        "--queue",
        "redis://127.0.0.1:1",
        "--build",
        "b",
        "--tests",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        list.to_string_lossy().into_owned(),
        "--html".into(),
        "x.html".into(),
    ])
    .collect();
    let out = Proc::spawn("queue", &scratch, &with_command(args)).wait(LONG);
    assert!(
        out.stderr.contains("--html on `ciq run` is for local mode"),
        "{}",
        out.both()
    );
}
