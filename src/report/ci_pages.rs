//! Putting the build's summary on the CI's own page: GitHub Actions' job summary (the file
//! `$GITHUB_STEP_SUMMARY` names) and a Buildkite annotation (`buildkite-agent annotate`, when
//! the agent is on `PATH`). Off those CIs nothing happens. A page that cannot be written is a
//! warning: the log has everything, and the verdict never depends on it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::report::findings::Findings;
use crate::report::summary::Verdict;

/// How long `buildkite-agent annotate` may take.
const ANNOTATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most either page takes: GitHub refuses a job summary over 1 MiB (the whole file of a
/// step), Buildkite an annotation over 1 MiB.
const PAGE_LIMIT: usize = 1024 * 1024;
/// Room kept below [`PAGE_LIMIT`].
const PAGE_MARGIN: usize = 4 * 1024;

/// Publishes the `findings` of `build` (in `namespace`, empty for none) where the CI, read
/// through `var`, shows them. A summary too long for the page is cut, and says that the whole
/// report is in the log and in `files` (the report's `--junit` and `--json`).
pub async fn publish(
    findings: &Findings,
    build: &str,
    namespace: &str,
    files: &[&Path],
    var: impl Fn(&str) -> Option<String>,
) {
    let get = |name: &str| var(name).filter(|value| !value.is_empty());
    let title = if namespace.is_empty() {
        format!("ciq build {build}")
    } else {
        format!("ciq build {build} ({namespace})")
    };
    if get("GITHUB_ACTIONS").is_some()
        && let Some(path) = get("GITHUB_STEP_SUMMARY")
        && let Err(err) = append(
            &PathBuf::from(&path),
            findings,
            &title,
            &cut_note("GitHub's 1 MiB limit for a job summary", files),
        )
    {
        crate::say!("ciq report: warning: cannot write the job summary to `{path}`: {err}");
    }
    if get("BUILDKITE").is_some()
        && let Ok(agent) = which::which("buildkite-agent")
    {
        let context = if namespace.is_empty() {
            "ciq".to_owned()
        } else {
            format!("ciq-{namespace}")
        };
        let style = match findings.verdict() {
            Verdict::Green => "success",
            Verdict::Incomplete => "warning",
            Verdict::Failed | Verdict::ListMismatch => "error",
        };
        let markdown = findings.markdown_within(
            &title,
            PAGE_LIMIT - PAGE_MARGIN,
            &cut_note("Buildkite's 1 MiB limit for an annotation", files),
        );
        let annotated = annotate(&agent, style, &context, &markdown, ANNOTATE_TIMEOUT).await;
        if let Err(err) = annotated {
            crate::say!("ciq report: warning: cannot annotate the Buildkite build: {err}");
        }
    }
}

/// The line a cut summary ends with: why it was cut, and where the whole report is.
fn cut_note(limit: &str, files: &[&Path]) -> String {
    let mut whole = "this step's log (the output of `ciq report`)".to_owned();
    for file in files {
        whole.push_str(&format!(" and `{}`", file.display()));
    }
    format!(
        "\n**ciq cut this summary here, to stay under {limit}: the full report is in {whole}.**\n"
    )
}

/// Appends the summary to the job summary file at `path`, within what the file has room for.
fn append(path: &Path, findings: &Findings, title: &str, note: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // Earlier steps' lines in the file count against the same limit.
    let used = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let room = (PAGE_LIMIT - PAGE_MARGIN).saturating_sub(used);
    let markdown = findings.markdown_within(title, room.saturating_sub(1), note);
    if markdown.is_empty() {
        return Err(std::io::Error::other(format!(
            "it already holds {used} bytes, and GitHub takes {PAGE_LIMIT}"
        )));
    }
    file.write_all(markdown.as_bytes())?;
    file.write_all(b"\n")
}

/// Runs `buildkite-agent annotate` with `markdown` on its stdin, within `limit`: in a process
/// group of its own, all of which is killed when it takes longer (an agent that hangs may have
/// started children of its own).
async fn annotate(
    agent: &Path,
    style: &str,
    context: &str,
    markdown: &str,
    limit: Duration,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(agent)
        .args(["annotate", "--style", style, "--context", context])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start `{}`: {err}", agent.display()))?;
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(nix::unistd::Pid::from_raw);
    let stdin = child.stdin.take();
    let talked = async move {
        if let Some(mut stdin) = stdin {
            stdin
                .write_all(markdown.as_bytes())
                .await
                .map_err(|err| format!("cannot send it the summary: {err}"))?;
        }
        child
            .wait_with_output()
            .await
            .map_err(|err| err.to_string())
    };
    let finished = match tokio::time::timeout(limit, talked).await {
        Ok(finished) => finished?,
        Err(_) => {
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            return Err(format!("it took over {}", crate::human::duration(limit)));
        }
    };
    if finished.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&finished.stderr);
    Err(format!(
        "`buildkite-agent annotate` ended with {}: {}",
        finished.status,
        said.trim().lines().last().unwrap_or("no output")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailureDetail, Outcome};
    use crate::quarantine::Quarantine;
    use crate::report::summary::{Listed, Summary};
    use crate::test_id::TestId;

    /// Regression: a hung `buildkite-agent` was cut off after its time, but a child it started
    /// lived on.
    #[tokio::test]
    async fn a_hung_agent_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let agent = dir.path().join("buildkite-agent");
        std::fs::write(
            &agent,
            format!(
                "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = annotate(&agent, "error", "ciq", "# summary", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err, "it took over 2s");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting for init to reap it: either way it runs no more.
        let ended = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ended() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ended(), "the agent's child {pid} still runs");
    }

    /// Regression: a job summary of 220 failing tests was 2.3 MB; GitHub takes 1 MiB.
    #[tokio::test]
    async fn the_job_summary_stays_under_githubs_limit() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("summary.md");
        std::fs::write(&page, "an earlier step's line\n").unwrap();
        let output = vec!["😀".repeat(300); 60].join("\n");
        let failing: Vec<Listed> = (0..220)
            .map(|n| Listed {
                id: TestId::new(format!("t/{n}")).unwrap(),
                outcome: Outcome::Failed,
                detail: Some(FailureDetail {
                    outcome: Outcome::Failed,
                    worker: "w1".into(),
                    duration_ms: 5,
                    output: output.clone(),
                }),
                requeues: 0,
            })
            .collect();
        let summary = Summary {
            total: 220,
            counts: [(Outcome::Failed, 220)].into_iter().collect(),
            failing,
            ..Summary::default()
        };
        let summary = Findings::new(summary, &Quarantine::default());
        assert!(
            summary.markdown("b").len() > PAGE_LIMIT,
            "the test needs a long summary"
        );
        let var = |name: &str| match name {
            "GITHUB_ACTIONS" => Some("true".to_owned()),
            "GITHUB_STEP_SUMMARY" => Some(page.display().to_string()),
            _ => None,
        };
        publish(&summary, "b", "", &[Path::new("build.xml")], var).await;
        let written = std::fs::read_to_string(&page).unwrap();
        assert!(written.len() < PAGE_LIMIT, "{} bytes", written.len());
        assert!(written.starts_with("an earlier step's line\n### ciq build b: failed"));
        assert!(
            written.ends_with("**ciq cut this summary here, to stay under GitHub's 1 MiB limit for a job summary: the full report is in this step's log (the output of `ciq report`) and `build.xml`.**\n\n"),
            "{}",
            &written[written.len() - 300..]
        );
    }
}
