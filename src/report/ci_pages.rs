//! Putting the build's summary on the CI's own page: GitHub Actions' job summary (the file
//! `$GITHUB_STEP_SUMMARY` names) and a Buildkite annotation (`buildkite-agent annotate`, when
//! the agent is on `PATH`). Off those CIs nothing happens. A page that cannot be written is a
//! warning: the log has everything, and the verdict never depends on it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::report::summary::{Summary, Verdict};

/// How long `buildkite-agent annotate` may take.
const ANNOTATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes `summary` of `build` (in `namespace`, empty for none) where the CI, read
/// through `var`, shows it.
pub async fn publish(
    summary: &Summary,
    build: &str,
    namespace: &str,
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
        && let Err(err) = append(&PathBuf::from(&path), &summary.markdown(&title))
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
        let style = match summary.verdict() {
            Verdict::Green => "success",
            Verdict::Incomplete => "warning",
            Verdict::Failed | Verdict::ListMismatch => "error",
        };
        let annotated = tokio::time::timeout(
            ANNOTATE_TIMEOUT,
            annotate(agent, style, &context, &summary.markdown(&title)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "it took over {}",
                crate::human::duration(ANNOTATE_TIMEOUT)
            ))
        });
        if let Err(err) = annotated {
            crate::say!("ciq report: warning: cannot annotate the Buildkite build: {err}");
        }
    }
}

fn append(path: &PathBuf, markdown: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(markdown.as_bytes())?;
    file.write_all(b"\n")
}

/// Runs `buildkite-agent annotate` with `markdown` on its stdin.
async fn annotate(
    agent: PathBuf,
    style: &str,
    context: &str,
    markdown: &str,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(&agent)
        .args(["annotate", "--style", style, "--context", context])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start `{}`: {err}", agent.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(markdown.as_bytes())
            .await
            .map_err(|err| format!("cannot send it the summary: {err}"))?;
    }
    let finished = child
        .wait_with_output()
        .await
        .map_err(|err| err.to_string())?;
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
