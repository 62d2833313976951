//! [`Step`]: one call of one script, its KEYS, ARGV and how its reply is read; [`run`] sends
//! it, and names the command when Redis refused one inside the script.

use redis::{Script, Value};

use super::SOURCES;
use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;

/// The script of a registered step, hashed once; implemented by `scripts!` in `mod.rs` for
/// every script it registers, and only there.
pub(in crate::queue::redis) trait Registered {
    /// The script, hashed once.
    fn script() -> &'static Script;
}

/// One call of one script.
pub(in crate::queue::redis) trait Step: Registered {
    /// The script's name, for messages.
    const NAME: &'static str;
    /// What the script's reply means.
    type Reply;
    /// Its KEYS, in the order its header gives.
    fn keys(&self) -> Vec<String>;
    /// Its ARGV, in the order its header gives.
    fn args(&self) -> Vec<String>;
    /// Reads the reply.
    fn reply(raw: Value) -> Result<Self::Reply, QueueError>;
}

/// Runs `step` (EVALSHA, loading the script on NOSCRIPT; sent again after a reconnect).
pub(in crate::queue::redis) async fn run<S: Step>(
    conn: &RedisConn,
    step: &S,
) -> Result<S::Reply, QueueError> {
    match conn.eval(S::script(), &step.keys(), &step.args()).await {
        Ok(raw) => S::reply(raw),
        // A command refused inside a script: name it from the script's own line.
        Err(QueueError::Permission {
            url,
            detail,
            script_line: Some((sha, line)),
        }) => Err(QueueError::Permission {
            detail: match command_at(&sha, line) {
                Some((script, command)) => {
                    format!("{detail}: {command} (in ciq's {script} script)")
                }
                None => detail,
            },
            url,
            script_line: None,
        }),
        Err(err) => Err(err),
    }
}

/// The Redis command on line `line` of the script whose SHA-1 is `sha`, and the script's name:
/// Redis 7.0 says only "can't run this command" and where, when an ACL refuses a command
/// inside a script.
fn command_at(sha: &str, line: usize) -> Option<(&'static str, String)> {
    let (name, source) = SOURCES
        .iter()
        .find(|(_, source)| Script::new(source).get_hash() == sha)?;
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let call = text.split("redis.call(").nth(1)?;
    let command: String = call
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!command.is_empty()).then_some((name, command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::redis::scripts::hello;

    #[test]
    fn commands_are_found_by_script_and_line() {
        let sha = hello::Hello::script().get_hash();
        let line = hello::SOURCE
            .lines()
            .position(|l| l.contains("redis.call('PEXPIRE'"))
            .unwrap()
            + 1;
        assert_eq!(command_at(sha, line), Some(("hello", "PEXPIRE".to_owned())));
        assert_eq!(command_at("nope", 1), None);
    }
}
