//! What the CI provider's environment tells ciq: build and worker ids, so `ciq run` needs no
//! `--build` or `--worker` on the common CI systems, the machine's share of a static split, and
//! whether the job is a job retry (a [`RetryRound`]).
//!
//! The build id must be the same on every machine of one CI run, differ between runs, and stay
//! the same when a job is retried (so the retry can re-run the build's failed tests); the worker
//! id must differ between the machines.

/// Ids found in the environment, and the provider they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiIds {
    /// The provider's name, for messages.
    pub provider: Option<&'static str>,
    /// The run's id, shared by all its machines.
    pub build: Option<String>,
    /// This machine's id within the run.
    pub worker: Option<String>,
    /// Set when the CI retried this job: which retry.
    pub retry: Option<RetryRound>,
}

/// Which retry a retried job belongs to: every job of one round shares one re-run of the
/// failed tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRound {
    /// Named by the CI (its attempt or retry count) or by `--retry=ROUND`.
    Named(String),
    /// Unnamed (GitLab): the job is a retry when its worker id already took part in the
    /// finished build, and its n-th retry is round n.
    Rejoined,
}

/// This machine's place among the CI job's parallel machines: a static share of the suite for
/// `--fallback static`, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This machine, from 0.
    pub index: usize,
    /// How many machines.
    pub count: usize,
}

impl Share {
    /// Whether the test at `position` of the sorted list is this machine's.
    pub fn holds(self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// The share the CI's parallelism variables give (Buildkite, CircleCI: 0-based; GitLab:
/// 1-based), read through `var`; `None` elsewhere or when they do not add up.
pub fn share(var: impl Fn(&str) -> Option<String>) -> Option<Share> {
    let number = |name: &str| var(name)?.trim().parse::<usize>().ok();
    let (index, count) = if let Some(index) = number("BUILDKITE_PARALLEL_JOB") {
        (index, number("BUILDKITE_PARALLEL_JOB_COUNT")?)
    } else if let Some(index) = number("CIRCLE_NODE_INDEX") {
        (index, number("CIRCLE_NODE_TOTAL")?)
    } else {
        (
            number("CI_NODE_INDEX")?.checked_sub(1)?,
            number("CI_NODE_TOTAL")?,
        )
    };
    (index < count).then_some(Share { index, count })
}

/// Reads ids through `var` (the process environment in production). A blank variable counts
/// as unset: a worker or build id of spaces would be refused as if the user had typed it.
pub fn detect(var: impl Fn(&str) -> Option<String>) -> CiIds {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let count = |name: &str| get(name)?.trim().parse::<u64>().ok();
    let join = |a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}-{b}")),
        (a, None) => a,
        (None, b) => b,
    };
    if get("BUILDKITE").is_some() {
        return CiIds {
            provider: Some("Buildkite"),
            build: get("BUILDKITE_BUILD_ID"),
            worker: get("BUILDKITE_PARALLEL_JOB").or_else(|| get("BUILDKITE_JOB_ID")),
            retry: count("BUILDKITE_RETRY_COUNT")
                .filter(|&n| n > 0)
                .map(|n| RetryRound::Named(format!("buildkite-{n}"))),
        };
    }
    if get("GITHUB_ACTIONS").is_some() {
        // Every leg of a matrix has the same GITHUB_JOB, and nothing in the environment tells
        // the legs apart, so the default id gets a suffix of its own per process.
        let leg = uuid::Uuid::new_v4().simple().to_string();
        return CiIds {
            provider: Some("GitHub Actions"),
            // A re-run keeps the run id and counts up the attempt: it retries the run's build.
            build: get("GITHUB_RUN_ID"),
            worker: join(
                join(get("GITHUB_JOB"), get("RUNNER_NAME")),
                Some(leg[..8].to_owned()),
            ),
            retry: count("GITHUB_RUN_ATTEMPT")
                .filter(|&n| n > 1)
                .map(|n| RetryRound::Named(format!("attempt-{n}"))),
        };
    }
    if get("GITLAB_CI").is_some() {
        return CiIds {
            provider: Some("GitLab CI"),
            build: get("CI_PIPELINE_ID"),
            worker: get("CI_NODE_INDEX").or_else(|| get("CI_JOB_ID")),
            // GitLab says nothing of retries: a job whose worker id (its place among the
            // parallel jobs, which a retry keeps) already took part in the finished build is one.
            retry: get("CI_NODE_INDEX").map(|_| RetryRound::Rejoined),
        };
    }
    if get("CIRCLECI").is_some() {
        return CiIds {
            provider: Some("CircleCI"),
            // The workflow's id, not the job's: the report runs in a job of its own. A rerun is a
            // new workflow with a new id.
            build: get("CIRCLE_WORKFLOW_ID").or_else(|| get("CIRCLE_BUILD_NUM")),
            worker: get("CIRCLE_NODE_INDEX"),
            retry: None,
        };
    }
    if get("JENKINS_URL").is_some() {
        return CiIds {
            provider: Some("Jenkins"),
            build: get("BUILD_TAG"),
            worker: join(get("NODE_NAME"), get("EXECUTOR_NUMBER")),
            retry: None,
        };
    }
    CiIds::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn detect_in(pairs: &[(&str, &str)]) -> CiIds {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        detect(|name| env.get(name).cloned())
    }

    #[test]
    fn each_provider_gives_build_and_worker() {
        let ids = detect_in(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_BUILD_ID", "b-1"),
            ("BUILDKITE_PARALLEL_JOB", "3"),
        ]);
        assert_eq!(
            (ids.build.as_deref(), ids.worker.as_deref()),
            (Some("b-1"), Some("3"))
        );
        assert_eq!(ids.retry, None);
        let retried = detect_in(&[("BUILDKITE", "true"), ("BUILDKITE_RETRY_COUNT", "2")]);
        assert_eq!(
            retried.retry,
            Some(RetryRound::Named("buildkite-2".to_owned()))
        );
        let ids = detect_in(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "99"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "test"),
            ("RUNNER_NAME", "runner 4"),
        ]);
        // A re-run is a retry of the run's build, not a build of its own.
        assert_eq!(ids.build.as_deref(), Some("99"));
        assert_eq!(ids.retry, Some(RetryRound::Named("attempt-2".to_owned())));
        let first = detect_in(&[("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ATTEMPT", "1")]);
        assert_eq!(first.retry, None);
        let worker = ids.worker.unwrap_or_default();
        assert!(worker.starts_with("test-runner 4-"), "{worker}");
        // Regression: the legs of a matrix all got the same id.
        let legs: std::collections::HashSet<_> = (0..3)
            .map(|_| detect_in(&[("GITHUB_ACTIONS", "true"), ("GITHUB_JOB", "test")]).worker)
            .collect();
        assert_eq!(legs.len(), 3, "{legs:?}");
        let ids = detect_in(&[
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_ID", "7"),
            ("CI_NODE_INDEX", "1"),
        ]);
        assert_eq!(
            (ids.build.as_deref(), ids.worker.as_deref()),
            (Some("7"), Some("1"))
        );
        assert_eq!(ids.retry, Some(RetryRound::Rejoined));
        let ids = detect_in(&[
            ("CIRCLECI", "true"),
            ("CIRCLE_BUILD_NUM", "12"),
            ("CIRCLE_NODE_INDEX", "0"),
        ]);
        assert_eq!(
            (ids.build.as_deref(), ids.worker.as_deref()),
            (Some("12"), Some("0"))
        );
        // The test jobs and the report job of one workflow share the build.
        let job = |job_id: &str, node: &str| {
            detect_in(&[
                ("CIRCLECI", "true"),
                ("CIRCLE_WORKFLOW_ID", "wf-7"),
                ("CIRCLE_WORKFLOW_JOB_ID", job_id),
                ("CIRCLE_BUILD_NUM", job_id),
                ("CIRCLE_NODE_INDEX", node),
            ])
        };
        assert_eq!(job("tests", "1").build, job("report", "0").build);
        assert_eq!(job("tests", "1").build.as_deref(), Some("wf-7"));
        let ids = detect_in(&[
            ("JENKINS_URL", "http://ci"),
            ("BUILD_TAG", "jenkins-app-5"),
            ("NODE_NAME", "agent"),
            ("EXECUTOR_NUMBER", "1"),
        ]);
        assert_eq!(ids.build.as_deref(), Some("jenkins-app-5"));
        assert_eq!(ids.worker.as_deref(), Some("agent-1"));
        assert_eq!(ids.provider, Some("Jenkins"));
    }

    #[test]
    fn nothing_outside_ci() {
        assert_eq!(detect_in(&[("HOME", "/root")]), CiIds::default());
    }

    /// Regression: a blank variable was taken as an id, which ciq then refused as if the user
    /// had passed a blank --worker.
    #[test]
    fn blank_values_count_as_unset() {
        let ids = detect_in(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_BUILD_ID", " "),
            ("BUILDKITE_PARALLEL_JOB", "\t"),
            ("BUILDKITE_JOB_ID", "job-1"),
        ]);
        assert_eq!((ids.build, ids.worker.as_deref()), (None, Some("job-1")));
        assert_eq!(detect_in(&[("GITLAB_CI", "  ")]), CiIds::default());
    }

    fn share_in(pairs: &[(&str, &str)]) -> Option<Share> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        share(|name| env.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn each_provider_gives_a_zero_based_share() {
        let expected = Some(Share { index: 1, count: 3 });
        let buildkite = [
            ("BUILDKITE_PARALLEL_JOB", "1"),
            ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
        ];
        assert_eq!(share_in(&buildkite), expected);
        assert_eq!(
            share_in(&[("CIRCLE_NODE_INDEX", "1"), ("CIRCLE_NODE_TOTAL", "3")]),
            expected
        );
        // GitLab counts from 1.
        assert_eq!(
            share_in(&[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")]),
            expected
        );
        for bad in [
            &[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "3")][..],
            &[("CIRCLE_NODE_INDEX", "3"), ("CIRCLE_NODE_TOTAL", "3")],
            &[
                ("BUILDKITE_PARALLEL_JOB", "x"),
                ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
            ],
            &[("HOME", "/root")],
        ] {
            assert_eq!(share_in(bad), None, "{bad:?}");
        }
        let share = Share { index: 1, count: 3 };
        let held: Vec<usize> = (0..7).filter(|at| share.holds(*at)).collect();
        assert_eq!(held, [1, 4]);
    }
}

#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::property_testing::{config, noisy_text};

    /// Every variable [`detect`] and [`share`] read.
    const VARIABLES: &[&str] = &[
        "BUILDKITE",
        "BUILDKITE_BUILD_ID",
        "BUILDKITE_PARALLEL_JOB",
        "BUILDKITE_PARALLEL_JOB_COUNT",
        "BUILDKITE_JOB_ID",
        "BUILDKITE_RETRY_COUNT",
        "GITHUB_ACTIONS",
        "GITHUB_RUN_ID",
        "GITHUB_RUN_ATTEMPT",
        "GITHUB_JOB",
        "RUNNER_NAME",
        "GITLAB_CI",
        "CI_PIPELINE_ID",
        "CI_NODE_INDEX",
        "CI_NODE_TOTAL",
        "CI_JOB_ID",
        "CIRCLECI",
        "CIRCLE_WORKFLOW_ID",
        "CIRCLE_BUILD_NUM",
        "CIRCLE_NODE_INDEX",
        "CIRCLE_NODE_TOTAL",
        "JENKINS_URL",
        "BUILD_TAG",
        "NODE_NAME",
        "EXECUTOR_NUMBER",
    ];

    /// A value a CI may give: a number (signed, padded, huge), a word, blank, or any text.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ \t]{0,2}-?[0-9]{1,25}[ \t]{0,2}",
            "[a-z0-9-]{1,12}",
            "[ \t\n]{0,3}",
            noisy_text(),
        ]
    }

    /// An environment of some of [`VARIABLES`], with any values.
    fn environment() -> impl Strategy<Value = HashMap<String, String>> {
        prop::collection::hash_map(
            prop::sample::select(VARIABLES).prop_map(str::to_owned),
            value(),
            0..12,
        )
    }

    /// A value that is not blank, as a CI that sets the variable would give it.
    fn set() -> impl Strategy<Value = String> {
        any::<String>().prop_filter("blank", |value| !value.trim().is_empty())
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the environment, the ids found are never blank, a provider is named when
        /// (and only when) its marker is set, and a share is one machine among its count.
        #[test]
        fn any_environment_gives_usable_ids(env in environment()) {
            let ids = detect(|name| env.get(name).cloned());
            for id in [&ids.build, &ids.worker].into_iter().flatten() {
                prop_assert!(!id.trim().is_empty(), "{id:?}");
            }
            let marked = ["BUILDKITE", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "JENKINS_URL"]
                .iter()
                .any(|marker| env.get(*marker).is_some_and(|v| !v.trim().is_empty()));
            prop_assert_eq!(ids.provider.is_some(), marked);
            if let Some(share) = share(|name| env.get(name).cloned()) {
                prop_assert!(share.index < share.count, "{share:?}");
                prop_assert!(share.holds(share.index));
            }
        }

        /// Each provider's build and worker ids read back exactly as the CI set them, and its
        /// retry counters as the retry they count.
        #[test]
        fn provider_values_read_back(
            provider in 0..5usize,
            build in set(),
            worker in set(),
            round in 0..1000u64,
            padding in "[ \t]{0,2}",
        ) {
            let count = format!("{padding}{round}{padding}");
            let (pairs, retry): (Vec<(&str, &str)>, Option<RetryRound>) = match provider {
                0 => (
                    vec![("BUILDKITE", "true"), ("BUILDKITE_BUILD_ID", &build), ("BUILDKITE_PARALLEL_JOB", &worker), ("BUILDKITE_RETRY_COUNT", &count)],
                    (round > 0).then(|| RetryRound::Named(format!("buildkite-{round}"))),
                ),
                1 => (
                    vec![("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ID", &build), ("GITHUB_JOB", &worker), ("GITHUB_RUN_ATTEMPT", &count)],
                    (round > 1).then(|| RetryRound::Named(format!("attempt-{round}"))),
                ),
                2 => (
                    vec![("GITLAB_CI", "true"), ("CI_PIPELINE_ID", &build), ("CI_NODE_INDEX", &worker)],
                    Some(RetryRound::Rejoined),
                ),
                3 => (
                    vec![("CIRCLECI", "true"), ("CIRCLE_WORKFLOW_ID", &build), ("CIRCLE_NODE_INDEX", &worker)],
                    None,
                ),
                _ => (
                    vec![("JENKINS_URL", "http://ci"), ("BUILD_TAG", &build), ("NODE_NAME", &worker)],
                    None,
                ),
            };
            let env: HashMap<&str, &str> = pairs.into_iter().collect();
            let ids = detect(|name| env.get(name).map(|value| (*value).to_owned()));
            prop_assert_eq!(ids.build.as_deref(), Some(build.as_str()));
            let found = ids.worker.unwrap_or_default();
            if provider == 1 {
                // GitHub's legs of a matrix share the job's name: a suffix tells them apart.
                prop_assert!(found.starts_with(&format!("{worker}-")), "{found:?}");
            } else {
                prop_assert_eq!(found, worker);
            }
            prop_assert_eq!(ids.retry, retry);
        }
    }
}
