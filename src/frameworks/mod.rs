//! Framework adapters: for each test framework ciq knows, how it lists tests, what its listing
//! means, and how its tests run. They sit above the list-command runner ([`crate::listing`])
//! and the generic runners ([`crate::runner`]), and below discovery ([`crate::discovery`]),
//! which picks the adapter a source names.

pub mod nextest;
pub mod pytest;
