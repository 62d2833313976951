//! JUnit XML, both ways: [`read`] takes per-test results from the report a test command wrote
//! (the generic runner, pytest, the timing file), [`write`](mod@write) gives the whole build as one report
//! for the CI's test view (`--junit FILE`).

pub mod read;
pub mod write;
