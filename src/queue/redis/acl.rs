//! The Redis permissions ciq needs: [`ACL_RULE`] for a least-privilege user, and what a
//! cluster adds ([`CLUSTER_ACL_EXTRA`]). The README gives both; a test holds it to them.

/// The ACL rule a Redis user needs to run ciq (README, "Redis permissions"): ciq's keys only,
/// and the commands ciq sends or its scripts call (`config|get` only for the eviction warning).
pub const ACL_RULE: &str = "resetkeys ~ciq:* resetchannels -@all +ping +evalsha +append +getrange +script|load +multi +exec +time +get +set +del +exists +pttl +pexpire +hget +hset +hmget +hsetnx +hgetall +hincrby +hexists +hlen +hscan +hdel +hvals +smismember +zmscore +llen +lpop +lpush +rpush +lrange +sadd +scard +sismember +srem +sscan +smembers +zadd +zcard +zrange +zrangebyscore +zrem +zremrangebyrank +zscore +info +config|get";

/// What a user of a Redis Cluster needs beyond [`ACL_RULE`], on every node: the client reads the
/// slot map (`CLUSTER SLOTS`) and follows a slot being moved (`ASKING`).
pub const CLUSTER_ACL_EXTRA: &str = "+cluster|slots +asking";

#[cfg(test)]
mod tests {
    /// The README's least-privilege user must be the one the tests run a build with.
    #[test]
    fn readme_gives_the_acl_rule() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!(
                "ACL SETUSER ci on >PASSWORD {}\n",
                super::ACL_RULE
            )),
            "README lacks the ACL rule"
        );
        assert!(
            readme.contains(&format!("`{}`", super::CLUSTER_ACL_EXTRA)),
            "README lacks the cluster's ACL addition"
        );
    }
}
