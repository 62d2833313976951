//! Test support for ciq's integration tests and its chaos runner: real redis-server processes
//! ([`redis_server`]) and clusters of them ([`redis_cluster`]), a TCP fault proxy ([`proxy`]), real `ciq` processes ([`processes`]) in a
//! scratch directory ([`scratch`]) with command lines ([`args`]), what they print
//! ([`output`]), what they leave in Redis ([`inspect`]), checks several tests share
//! ([`scenarios`]), and pages loaded in headless Chromium ([`browser`]).

#![expect(
    clippy::expect_used,
    reason = "a test's set-up that fails should stop the test loudly"
)]

pub mod args;
pub mod browser;
pub mod inspect;
pub mod output;
pub mod processes;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_server;
pub mod scenarios;
pub mod scratch;

pub use args::*;
pub use browser::{Browser, Element, LoadedPage, PageLoad};
pub use inspect::*;
pub use output::*;
pub use processes::*;
pub use proxy::FaultProxy;
pub use redis_cluster::RedisCluster;
pub use redis_server::{RedisServer, TestRedis, free_port};
pub use scenarios::*;
pub use scratch::*;
