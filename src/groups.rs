//! Build-wide resource groups (`ciq run --group NAME=N --group-map FILE`): at most N tests of a
//! group run at once across the whole build, every machine together, for tests that share one
//! database or one emulator. The queue enforces it when it hands tests out (a test whose group is
//! full is skipped over, keeping its place, while other work remains), so the limit holds across
//! machines, and a group's slot lives and dies with the test's lease.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::test_id::TestId;

/// The most slots a group may have: more would be no limit on any real build.
pub const MAX_SLOTS: u32 = 1_000_000;

/// A `--group` or `--group-map` that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GroupError {
    /// `--group` without `=N`, or with a count that is not a positive number.
    #[error(
        "--group (CIQ_GROUP) `{0}`: expected NAME=N, a group name and how many of its tests may run at once across the build (N from 1 to {MAX_SLOTS})"
    )]
    BadLimit(String),
    /// One group given two limits.
    #[error("--group (CIQ_GROUP): group `{0}` is given twice")]
    Twice(String),
    /// A map file that cannot be read.
    #[error("--group-map `{}`: cannot read it: {}", .0.display(), .1)]
    Unreadable(PathBuf, String),
    /// A map line that is not `ID<TAB>GROUP`.
    #[error("--group-map `{}` line {}: expected `TEST-ID<TAB>GROUP`, got {:?}", .0.display(), .1, .2)]
    BadLine(PathBuf, usize, String),
    /// A map line naming a group no `--group` limits.
    #[error(
        "--group-map `{}` line {}: group `{}` has no limit: pass --group {}=N", .0.display(), .1, .2, .2
    )]
    UnknownGroup(PathBuf, usize, String),
    /// A map without `--group`.
    #[error("--group-map needs --group NAME=N for each group it names")]
    MapWithoutLimits,
}

/// The build's groups: each group's limit, and each grouped test's group. Empty when no group
/// is used, which costs the queue nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// Group name -> how many of its tests may run at once.
    pub limits: BTreeMap<String, u32>,
    /// Test id -> its group (each one of `limits`).
    pub members: HashMap<String, String>,
}

impl Groups {
    /// The groups of `--group` values (`NAME=N`) and an optional `--group-map` file.
    pub fn new(limits: &[String], map: Option<&Path>) -> Result<Self, GroupError> {
        let mut groups = Self::default();
        for limit in limits {
            let (name, slots) = parse_limit(limit)?;
            if groups.limits.insert(name.clone(), slots).is_some() {
                return Err(GroupError::Twice(name));
            }
        }
        if let Some(path) = map {
            if groups.limits.is_empty() {
                return Err(GroupError::MapWithoutLimits);
            }
            let text = std::fs::read_to_string(path)
                .map_err(|err| GroupError::Unreadable(path.to_owned(), err.to_string()))?;
            groups.members = parse_map(path, &text, &groups.limits)?;
        }
        Ok(groups)
    }

    /// Whether no group is used.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The group of test `id`, if it has one.
    pub fn group_of(&self, id: &TestId) -> Option<&str> {
        self.members.get(id.as_str()).map(String::as_str)
    }

    /// The limit of group `name` (none for a group without one: unlimited).
    pub fn limit(&self, name: &str) -> Option<u32> {
        self.limits.get(name).copied()
    }
}

/// `NAME=N`: a name without tab or line break, and N from 1 to [`MAX_SLOTS`].
fn parse_limit(value: &str) -> Result<(String, u32), GroupError> {
    let bad = || GroupError::BadLimit(value.to_owned());
    let (name, slots) = value.rsplit_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || name.contains(['\t', '\n', '\r']) {
        return Err(bad());
    }
    let slots: u32 = slots.trim().parse().map_err(|_| bad())?;
    if slots == 0 || slots > MAX_SLOTS {
        return Err(bad());
    }
    Ok((name.to_owned(), slots))
}

/// Lines `ID<TAB>GROUP` (blank lines and lines starting with `#` skipped); every group one of
/// `limits`.
fn parse_map(
    path: &Path,
    text: &str,
    limits: &BTreeMap<String, u32>,
) -> Result<HashMap<String, String>, GroupError> {
    let mut members = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || GroupError::BadLine(path.to_owned(), n + 1, line.to_owned());
        let (id, group) = line.rsplit_once('\t').ok_or_else(bad)?;
        let group = group.trim();
        if id.is_empty() || group.is_empty() {
            return Err(bad());
        }
        if !limits.contains_key(group) {
            return Err(GroupError::UnknownGroup(
                path.to_owned(),
                n + 1,
                group.to_owned(),
            ));
        }
        members.insert(id.to_owned(), group.to_owned());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(values: &[&str]) -> Result<Groups, GroupError> {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        Groups::new(&values, None)
    }

    #[test]
    fn a_limit_is_a_name_and_a_positive_count() {
        let groups = limits(&["db=1", "emu = 3"]).unwrap();
        assert_eq!(groups.limit("db"), Some(1));
        assert_eq!(groups.limit("emu"), Some(3));
        for bad in ["db", "db=0", "=2", "db=x", "db=-1", "db=1000001"] {
            assert_eq!(
                limits(&[bad]),
                Err(GroupError::BadLimit(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            limits(&["db=1", "db=2"]),
            Err(GroupError::Twice("db".to_owned()))
        );
    }

    #[test]
    fn a_map_names_only_limited_groups_in_tab_separated_lines() {
        let path = Path::new("map");
        let known: BTreeMap<_, _> = [("db".to_owned(), 1)].into();
        let members = parse_map(path, "# comment\na b\tdb\n\nc\tdb\r\n", &known).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members["a b"], "db");
        assert_eq!(
            parse_map(path, "a db\n", &known),
            Err(GroupError::BadLine(path.to_owned(), 1, "a db".to_owned()))
        );
        assert_eq!(
            parse_map(path, "a\tdb\nb\tweb\n", &known),
            Err(GroupError::UnknownGroup(
                path.to_owned(),
                2,
                "web".to_owned()
            ))
        );
    }
}
