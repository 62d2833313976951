//! [`ListSource`]: where a build's tests come from, as the queue and the layers around it see
//! it. It sits low in the crate because everything that wraps a list (grind copies, the
//! quarantine's check, discovery) and the queue that consumes it share it, and none of them
//! needs to know how the list is made.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use crate::test_id::TestList;

/// Why a list could not be produced, in the words of whatever produced it.
pub type ListFailure = Box<dyn std::error::Error + Send + Sync>;

/// Where a build's tests come from, as the queue sees them. Only the elected leader produces
/// the list (listing can be slow: a build, a collection), and the queue never needs to know
/// how; a worker that holds a list anyway (a file every worker reads) has it checked against
/// the build's.
pub trait ListSource: Sync {
    /// Produces the list, within `timeout`.
    fn produce(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Cow<'_, TestList>, ListFailure>> + Send;

    /// The list this worker holds already, if any.
    fn held(&self) -> Option<&TestList>;

    /// The list a follower checks against its build's: the one it holds, or one its framework
    /// collected anyway to run the tests (persistent pytest), so a worker whose suite differs
    /// never lets the build go green without its own tests. `None` when the worker has none
    /// without a listing of its own, or its framework could not list (it then fails when it
    /// runs, and says why).
    fn to_check(&self, timeout: Duration)
    -> impl Future<Output = Option<Cow<'_, TestList>>> + Send;
}
