//! What the property tests of ciq's parsers share (the `properties` module beside each parser
//! of outside input): their configuration, and generators of test ids, noise and corruption.
//!
//! Each property runs [`DEFAULT_CASES`] cases in the ordinary test run, which must stay quick;
//! `PROPTEST_CASES` overrides that (the README's long run sets 100000). A failure prints the
//! smallest input found, which is not saved to a file (it would land in `src/`): every run
//! draws new inputs, unless `PROPTEST_RNG_SEED` fixes them.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per property in the ordinary test run.
pub const DEFAULT_CASES: u32 = 1000;

/// The configuration of every property: [`DEFAULT_CASES`], unless `PROPTEST_CASES` says
/// otherwise (the `proptest!` macro reads the environment over this).
pub fn config() -> Config {
    Config {
        cases: DEFAULT_CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A valid test id: mostly pytest- and libtest-shaped ones, the rest any text a test id may be
/// (spaces, tabs, `#`, brackets, any Unicode), never blank, NUL or a line break, and never
/// starting with a byte order mark (which a file's first line loses).
pub fn test_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,8}(/[a-z_]{1,8}){0,2}\\.py::([A-Z][a-z]{0,6}::)?test_[a-z0-9_]{1,10}(\\[[^\\x00\\n\\r\\]]{0,12}\\])?",
        "[a-z_]{1,10}(::[a-z_]{1,10}){0,3}",
        "[^\\x00\\n\\r\u{feff}][^\\x00\\n\\r]{0,29}"
            .prop_filter("blank", |id| !id.trim().is_empty()),
    ]
}

/// Distinct valid test ids, `size` of them at most (at least one), in generated order.
pub fn distinct_test_ids(size: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(test_id(), size).prop_map(|ids| {
        let mut seen = std::collections::HashSet::new();
        ids.into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect()
    })
}

/// A byte that is likely to matter to a parser (line ends, NUL, markup, quotes, a byte that is
/// never UTF-8), or any byte.
pub fn noisy_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"\n\r\0 \t:#<>/&;\"'={}[],\\a0".to_vec()),
        Just(0xff),
        any::<u8>(),
    ]
}

/// Bytes made of [`noisy_byte`]s.
pub fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(noisy_byte(), 0..300)
}

/// Text made of noise: line ends, markup, quotes, whitespace, any character.
pub fn noisy_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                '\n', '\r', '\0', ' ', '\t', ':', '#', '<', '>', '/', '&', ';', '"', '{', '}', '[',
                ']', ',', '\\', 'a', '0', 'é', '\u{feff}',
            ]),
            any::<char>(),
        ],
        0..300,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Edits to apply to a valid input with [`corrupt`]: where, what kind, which byte.
pub fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), noisy_byte()), 1..6)
}

/// `bytes` with `edits` applied: each inserts, deletes or replaces the byte at its position
/// (taken modulo the length), so a valid input turns into a nearly valid one.
pub fn corrupt(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, byte) in edits {
        let at = at % (bytes.len() + 1);
        match (kind % 3, at < bytes.len()) {
            (0, _) | (_, false) => bytes.insert(at, byte),
            (1, true) => {
                bytes.remove(at);
            }
            _ => bytes[at] = byte,
        }
    }
    bytes
}

/// A listing parser's error names a line of the output it read (`line N ...`, 1 <= N <=
/// `lines`) and holds no control character: the one line a user sees points at the culprit.
pub fn names_a_line(err: &str, lines: usize) -> Result<(), TestCaseError> {
    let line: usize = err
        .strip_prefix("line ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("no line: {err}")))?;
    prop_assert!((1..=lines).contains(&line), "{err}");
    prop_assert!(!err.chars().any(char::is_control), "{err}");
    Ok(())
}
