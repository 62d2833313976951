//! The HTML report's page (`src/report/html/template.html`, docs/report-html.md) in a real
//! browser: headless Chromium loads pages filled by `scripts/report_sample.py` (the reference
//! producer: a simulated build with a killed worker, a flaky test, failures and ids holding
//! markup), and each test checks what a person would: a lane per worker, a bar per attempt, the
//! take-over marked, the failure's output one fragment away, markup shown and never run, no
//! console errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use ciq_testkit::{Browser, Element, LoadedPage, PageLoad, repository};
use serde_json::Value;

/// A sample build's data and its filled page, in a directory of their own.
struct Sample {
    _dir: tempfile::TempDir,
    page: PathBuf,
    data: Value,
}

fn sample(args: &[&str]) -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let data = dir.path().join("data.json");
    let output = Command::new("python3")
        .arg(repository().join("scripts/report_sample.py"))
        .args(args)
        .arg("--data")
        .arg(&data)
        .arg("--html")
        .arg(&page)
        .output()
        .expect("python3 runs scripts/report_sample.py (scripts/test installs python3)");
    assert!(
        output.status.success(),
        "report_sample.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    Sample {
        _dir: dir,
        page,
        data,
    }
}

fn load(page: &Path, fragment: Option<String>, screenshot: Option<PathBuf>) -> LoadedPage {
    let loaded = Browser::find().load(
        page,
        &PageLoad {
            fragment,
            screenshot,
            ..PageLoad::default()
        },
    );
    assert!(
        loaded.console.is_empty(),
        "the page wrote to the console (an error, or a log it should not write): {:#?}",
        loaded.console
    );
    loaded
}

fn ready(page: &LoadedPage) {
    let body = Element::all(&page.dom, "data-ready=").remove(0);
    assert_eq!(
        body.attr("data-ready"),
        "1",
        "the page did not finish drawing: {:?}",
        body.attrs.get("data-error")
    );
}

fn lanes(page: &LoadedPage) -> Vec<Element> {
    Element::all(&page.dom, "data-lane=\"worker\"")
}

fn column(data: &Value, name: &str) -> Vec<Value> {
    data["attempts"][name].as_array().unwrap().clone()
}

/// Attempts per worker as the data holds them: single attempts plus merged runs' counts.
fn attempts_per_worker(data: &Value) -> Vec<u64> {
    let mut per = vec![0; data["workers"].as_array().unwrap().len()];
    for w in column(data, "worker") {
        per[w.as_u64().unwrap() as usize] += 1;
    }
    if let Some(runs) = data["runs"].as_object() {
        let counts = runs["count"].as_array().unwrap();
        for (w, count) in runs["worker"].as_array().unwrap().iter().zip(counts) {
            per[w.as_u64().unwrap() as usize] += count.as_u64().unwrap();
        }
    }
    per
}

fn events<'a>(data: &'a Value, kind: &str) -> Vec<&'a Value> {
    data["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[test]
fn html_page_draws_a_lane_per_worker_and_a_bar_per_attempt() {
    let s = sample(&["--tests", "300", "--workers", "4", "--batch-size", "2"]);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report-sample.png");
    let _ = std::fs::remove_file(&shot);
    let page = load(&s.page, None, Some(shot.clone()));
    ready(&page);

    let workers = s.data["workers"].as_array().unwrap();
    let lanes = lanes(&page);
    assert_eq!(lanes.len(), workers.len(), "one lane per worker process");
    let per = attempts_per_worker(&s.data);
    for ((lane, worker), attempts) in lanes.iter().zip(workers).zip(&per) {
        let id = worker["id"].as_str().unwrap();
        assert_eq!(lane.attr("data-worker"), id);
        assert_eq!(lane.number("data-attempts"), *attempts, "attempts of {id}");
        assert_eq!(
            lane.number("data-bars"),
            *attempts,
            "a bar per attempt of {id}"
        );
        assert_eq!(
            lane.number("data-drawn"),
            *attempts,
            "every bar of {id} drawn in the whole-build view"
        );
    }
    let card = Element::by_id(&page.dom, "timeline-card").unwrap();
    assert_eq!(card.attr("data-mode"), "full");
    assert_eq!(card.number("data-lanes"), workers.len() as u64);

    // The killed worker: its lane says it went silent and lost its test, the taker's lane and
    // the arrows say who took it over, the events log names it.
    let takeovers = events(&s.data, "takeover");
    assert!(!takeovers.is_empty(), "the sample kills a worker");
    let killed = takeovers[0]["from"].as_u64().unwrap() as usize;
    assert_eq!(lanes[killed].attr("data-leave"), "silent");
    assert!(lanes[killed].number("data-lost") >= 1);
    assert_eq!(
        lanes[killed].number("data-taken-from"),
        takeovers.len() as u64
    );
    let taken: u64 = lanes.iter().map(|l| l.number("data-takeovers")).sum();
    assert_eq!(taken, takeovers.len() as u64);
    assert_eq!(
        card.number("data-takeover-arrows"),
        takeovers.len() as u64,
        "an arrow per take-over"
    );
    assert_eq!(
        Element::all(&page.dom, "data-kind=\"takeover\"").len(),
        takeovers.len()
    );
    let leader = Element::all(&page.dom, "data-lane=\"leader\"").remove(0);
    assert_eq!(leader.number("data-listing"), 1);
    assert_eq!(leader.number("data-commit"), 1);
    assert!(leader.number("data-elections") >= 1);

    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot of the page"
    );
}

#[test]
fn html_page_opens_the_failure_output_from_its_fragment() {
    let s = sample(&["--tests", "60", "--workers", "3"]);
    let failure = s.data["summary"]["failing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "math/divide_by_zero")
        .unwrap();
    let attempt = failure["attempt"].as_u64().unwrap();
    let output = s.data["outputs"][attempt.to_string()].as_str().unwrap();
    assert!(
        output.contains("<script>"),
        "the sample's output holds markup"
    );

    let page = load(&s.page, Some(format!("attempt={attempt}")), None);
    ready(&page);
    let detail = Element::by_id(&page.dom, "attempt-detail").unwrap();
    assert_eq!(detail.number("data-attempt"), attempt);
    assert_eq!(
        Element::by_id(&page.dom, "attempt-test")
            .unwrap()
            .text(&page.dom),
        "math/divide_by_zero"
    );
    assert_eq!(
        Element::by_id(&page.dom, "attempt-output")
            .unwrap()
            .text(&page.dom),
        output,
        "the failure's whole output, as text"
    );
    // The failures list holds it too, folded.
    let listed = Element::all(&page.dom, "data-test=\"math/divide_by_zero\"");
    assert_eq!(listed[0].tag, "details");
    assert!(listed[0].text(&page.dom).contains(output));
}

#[test]
fn html_page_shows_markup_in_ids_and_outputs_and_never_runs_it() {
    let s = sample(&["--tests", "60", "--workers", "3"]);
    let tests = s.data["tests"].as_array().unwrap();
    let hostile = tests
        .iter()
        .position(|t| t.as_str().unwrap().starts_with("xss/</script><!--"))
        .unwrap();
    let attempt = column(&s.data, "test")
        .iter()
        .position(|t| t.as_u64() == Some(hostile as u64))
        .unwrap();
    let page = load(&s.page, Some(format!("attempt={attempt}")), None);
    ready(&page);

    // Had any of it run, it would have set the title, a body attribute, or left an element.
    let title = Element::all(&page.dom, "<title").remove(0);
    assert_eq!(
        title.text(&page.dom),
        "failed \u{b7} ciq build 7421 (sample)"
    );
    let body = Element::all(&page.dom, "data-ready=").remove(0);
    assert!(!body.attrs.contains_key("data-pwned"), "{:?}", body.attrs);
    assert_eq!(
        Element::all(&page.dom, "<img").len(),
        0,
        "no element from an id"
    );
    assert_eq!(
        Element::all(&page.dom, "<b>").len(),
        0,
        "no element from an id"
    );
    assert_eq!(
        page.dom.matches("<script").count(),
        2,
        "only the data and the page's own script"
    );

    // Each one shows as the text it is.
    assert_eq!(
        Element::by_id(&page.dom, "attempt-test")
            .unwrap()
            .text(&page.dom),
        tests[hostile].as_str().unwrap()
    );
    let quarantined = s.data["summary"]["quarantined"][0]["id"].as_str().unwrap();
    assert!(quarantined.contains("<script>"));
    let listed = Element::all(&page.dom, "class=\"test\"");
    assert!(
        listed
            .iter()
            .any(|d| d.attrs.get("data-test").map(String::as_str) == Some(quarantined)),
        "the quarantined failure with markup in its id is listed by its id"
    );
}

#[test]
fn html_page_says_a_build_is_running_and_which_records_were_lost() {
    let s = sample(&["--tests", "80", "--workers", "3", "--running", "--partial"]);
    assert_eq!(s.data["running"], true);
    let page = load(&s.page, None, None);
    ready(&page);
    let badge = Element::by_id(&page.dom, "verdict-badge").unwrap();
    assert_eq!(badge.text(&page.dom), "running");
    let running = Element::all(&page.dom, "data-banner=\"running\"");
    assert!(
        running[0]
            .text(&page.dom)
            .contains("This build is still running")
    );
    let partial = Element::all(&page.dom, "data-banner=\"partial\"");
    let detail = s.data["partial"][0]["detail"].as_str().unwrap();
    assert!(partial[0].text(&page.dom).contains(detail));
    let victim = s.data["partial"][0]["worker"].as_u64().unwrap() as usize;
    let lanes = lanes(&page);
    assert_eq!(lanes[victim].attr("data-partial"), "1");
    for (lane, attempts) in lanes.iter().zip(attempts_per_worker(&s.data)) {
        assert_eq!(lane.number("data-bars"), attempts);
    }
}

#[test]
fn html_page_marks_a_dead_leader_and_a_breaker() {
    let s = sample(&[
        "--tests",
        "120",
        "--workers",
        "5",
        "--leader-dies",
        "--breaker",
    ]);
    let page = load(&s.page, None, None);
    ready(&page);
    let leader = Element::all(&page.dom, "data-lane=\"leader\"").remove(0);
    let elections = events(&s.data, "election");
    assert_eq!(leader.number("data-elections"), elections.len() as u64);
    assert_eq!(leader.number("data-leader-died"), 1);
    assert_eq!(
        leader.number("data-listing"),
        2,
        "the dead leader's listing too"
    );
    let lanes = lanes(&page);
    assert_eq!(
        lanes[0].attr("data-leave"),
        "silent",
        "the first leader died"
    );
    assert_eq!(lanes[0].number("data-bars"), 0);
    let stopped = events(&s.data, "breaker");
    let k = stopped[0]["worker"].as_u64().unwrap() as usize;
    assert_eq!(lanes[k].attr("data-leave"), "breaker");
    assert_eq!(Element::all(&page.dom, "data-kind=\"breaker\"").len(), 1);
    let card = Element::by_id(&page.dom, "stopped").unwrap();
    assert!(
        card.text(&page.dom)
            .contains(s.data["summary"]["stopped"][0].as_str().unwrap())
    );
}

#[test]
fn html_page_aggregated_counts_every_attempt() {
    let s = sample(&[
        "--tests",
        "20000",
        "--workers",
        "4",
        "--batch-size",
        "4",
        "--detail",
        "aggregated",
    ]);
    assert_eq!(s.data["detail"], "aggregated");
    let page = load(&s.page, None, None);
    ready(&page);
    assert_eq!(
        Element::by_id(&page.dom, "timeline-card")
            .unwrap()
            .attr("data-mode"),
        "aggregated"
    );
    let per = attempts_per_worker(&s.data);
    let runs = s.data["runs"]["worker"].as_array().unwrap();
    for (k, (lane, worker)) in lanes(&page)
        .iter()
        .zip(s.data["workers"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(lane.number("data-attempts"), per[k]);
        assert_eq!(
            lane.number("data-attempts"),
            worker["attempts"].as_u64().unwrap()
        );
        let bars = column(&s.data, "worker")
            .iter()
            .chain(runs)
            .filter(|w| w.as_u64() == Some(k as u64))
            .count();
        assert_eq!(lane.number("data-bars"), bars as u64);
        assert!(bars < per[k] as usize / 2, "passes merged into runs");
    }
    let total: u64 = per.iter().sum();
    assert_eq!(
        total,
        s.data["aggregation"]["attempts_total"].as_u64().unwrap()
    );
}

#[test]
fn html_page_draws_the_documented_example() {
    let doc = std::fs::read_to_string(repository().join("docs/report-html.md")).unwrap();
    let start = doc.find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    let data: Value = serde_json::from_str(&doc[start..end]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, fill(&data.to_string())).unwrap();
    let loaded = load(&page, None, None);
    ready(&loaded);
    let lanes = lanes(&loaded);
    let bars: Vec<u64> = lanes.iter().map(|l| l.number("data-bars")).collect();
    assert_eq!(bars, attempts_per_worker(&data));
    assert_eq!(lanes[1].attr("data-leave"), "silent");
    assert_eq!(
        Element::by_id(&loaded.dom, "timeline-card")
            .unwrap()
            .number("data-takeover-arrows"),
        1
    );
}

#[test]
fn html_page_refuses_a_template_without_data_and_damaged_data() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("template.html");
    std::fs::write(&page, template()).unwrap();
    let loaded = load_refused(&page);
    assert!(
        loaded.contains("the report template without a build in it"),
        "{loaded}"
    );

    // Attempt columns of different lengths: no timeline rather than a wrong one.
    let s = sample(&["--tests", "20", "--workers", "2"]);
    let mut data = s.data;
    data["attempts"]["end"].as_array_mut().unwrap().pop();
    std::fs::write(&page, fill(&data.to_string())).unwrap();
    let refused = load_refused(&page);
    assert!(
        refused.contains("the attempt records are damaged"),
        "{refused}"
    );
}

/// Loads a page that must refuse its data; returns why it did.
fn load_refused(page: &Path) -> String {
    let loaded = Browser::find().load(page, &PageLoad::default());
    let body = Element::all(&loaded.dom, "data-ready=").remove(0);
    assert_eq!(body.attr("data-ready"), "error", "{:?}", body.attrs);
    assert_eq!(
        Element::all(&loaded.dom, "data-lane=\"worker\"").len(),
        0,
        "no lanes drawn from data it refused"
    );
    body.attr("data-error").to_owned()
}

#[test]
fn html_template_holds_one_placeholder_and_a_policy_naming_its_script() {
    assert_eq!(template().matches(PLACEHOLDER).count(), 1);
    let check = Command::new("python3")
        .arg(repository().join("scripts/html_csp.py"))
        .arg("--check")
        .output()
        .expect("python3 runs scripts/html_csp.py");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

const PLACEHOLDER: &str = "/*CIQ_REPORT_DATA*/null";

fn template() -> String {
    std::fs::read_to_string(repository().join("src/report/html/template.html")).unwrap()
}

/// The template filled with `json` as docs/report-html.md says the producer must.
fn fill(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    template().replacen(PLACEHOLDER, &escaped, 1)
}
