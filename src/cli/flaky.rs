//! `ciq flaky`: a namespace's flakiest tests over its recent builds.

use super::Failed;
use crate::config::args::FlakyArgs;
use crate::exit_code::ExitCode;
use crate::queue::redis::connection::{self, RedisConn};
use crate::queue::redis::history::History;

pub async fn flaky(args: FlakyArgs) -> Result<ExitCode, Failed> {
    connection::client(&args.queue)?;
    crate::config::namespace(&args.namespace)?;
    let conn = RedisConn::open(&args.queue, args.redis_timeout).await?;
    let (builds, ranked) = History::new(&conn, &args.namespace).ranked().await?;
    let namespace = if args.namespace.is_empty() {
        String::new()
    } else {
        format!(" of namespace `{}`", args.namespace)
    };
    if ranked.is_empty() {
        println!("no test failed or was flaky in the {builds} recorded build(s){namespace}");
        return Ok(ExitCode::Success);
    }
    println!("the flakiest tests of the last {builds} build(s){namespace}:");
    println!("{:>8} {:>8}  {:<20} test", "flaky", "failed", "last seen");
    for test in ranked.iter().take(args.limit) {
        println!(
            "{:>8} {:>8}  {:<20} {}",
            format!("{}/{builds}", test.flaky),
            format!("{}/{builds}", test.failed),
            test.last_seen,
            test.id
        );
    }
    if ranked.len() > args.limit {
        println!("... and {} more (--limit)", ranked.len() - args.limit);
    }
    Ok(ExitCode::Success)
}
