//! End to end with real processes.
