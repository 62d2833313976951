//! The per-test protocol against a real redis-server.
