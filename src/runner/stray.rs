//! [`Stray`]: a second `result` a persistent framework sent for a test it had answered, and
//! the test it is charged to: the one whose run wrote it, never the test ciq waited for then.

use crate::outcome::{Outcome, TestResult};
use crate::test_id::TestId;

/// A second `result` for a test already answered.
#[derive(Debug)]
pub(super) struct Stray {
    /// The test it names, which the framework answered just before.
    pub id: TestId,
    /// Its line number among the lines the process wrote to stdout.
    pub line: usize,
}

impl Stray {
    /// Errors the test whose run wrote this line, when its result is still ciq's to change:
    /// earlier in `results` (this batch), or `held` (the last of the batch before). A result
    /// already handed back stands, with a warning; `rerun`, which ran again, is never blamed.
    pub fn blame(
        self,
        results: &mut [TestResult],
        held: Option<&mut TestResult>,
        rerun: &TestId,
        limit: usize,
    ) {
        let guilty = results
            .iter_mut()
            .find(|result| result.id == self.id)
            .or(held.filter(|result| result.id == self.id));
        match guilty {
            Some(result) => {
                result.outcome = Outcome::Errored;
                result.output.push_str(&format!(
                    "[ciq: after this test's result the framework sent another `result` for it (line {} of its stdout), breaking the protocol; process group killed, restarting it]\n",
                    self.line
                ));
                result.output = crate::process::bounded(&result.output, limit);
            }
            None => crate::say!(
                "ciq: warning: the framework sent another `result` for `{}` (line {} of its stdout) after that test's result was recorded, breaking the protocol; the result stands; process group killed, `{rerun}` ran again in a new one",
                self.id,
                self.line
            ),
        }
    }
}
