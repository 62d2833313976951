//! Redis load.
