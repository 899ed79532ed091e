//! The Redis the event streams live in: a lone server, or a Redis Cluster named by its seed nodes,
//! behind one client ([`Bus`]) and one connection type ([`BusConnection`]) that every command and
//! pipeline goes through.
//!
//! `REDIS_URL` names a cluster when it lists several nodes, comma-separated
//! (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`), or one node as `redis+cluster://host:port`.
//! On a cluster every command and pipeline must stay within one slot: StreamBank's stream keys carry a
//! hash tag per partition (`{bank:p3}:events:transfers`), so a partition's streams, its `XADD`
//! pipelines (and the `WAIT` that ends them) and its `XREADGROUP`s go to one master.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How long a non-blocking command may take before it fails (a cluster node that died mid-command).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis client: a lone server, or a Redis Cluster.
#[derive(Debug, Clone)]
pub enum Bus {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Bus {
    /// Opens `url`: one `redis://` URL is a lone server; several, comma-separated, or one
    /// `redis+cluster://` URL are the seed nodes of a cluster.
    pub fn open(url: &str) -> RedisResult<Self> {
        let nodes: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.replacen("redis+cluster://", "redis://", 1))
            .collect();
        if nodes.len() > 1 || url.trim_start().starts_with("redis+cluster://") {
            let client = ClusterClient::builder(nodes)
                .response_timeout(RESPONSE_TIMEOUT)
                .connection_timeout(Duration::from_secs(2))
                .retries(6)
                .build()?;
            Ok(Bus::Cluster(Box::new(client)))
        } else {
            Ok(Bus::Single(redis::Client::open(url)?))
        }
    }

    /// Whether this is a Redis Cluster (every multi-key command must stay within one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Bus::Cluster(_))
    }

    /// A multiplexed connection for non-blocking commands, cheap to clone.
    pub async fn connect(&self) -> RedisResult<BusConnection> {
        match self {
            Bus::Single(client) => Ok(BusConnection::Single(
                client.get_multiplexed_async_connection().await?,
            )),
            Bus::Cluster(client) => {
                Ok(BusConnection::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// A connection of its own for blocking commands (`XREADGROUP ... BLOCK`), with no response
    /// timeout: `BLOCK` outlives redis-rs's default, and a blocked command holds up everything else
    /// sent on its connection.
    pub async fn connect_blocking(&self) -> RedisResult<BusConnection> {
        match self {
            Bus::Single(client) => {
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                Ok(BusConnection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            // A separate cluster connection (its own connection to each node), so that a blocked
            // read delays nobody else's commands; a response timeout well above any `BLOCK`.
            Bus::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_response_timeout(Duration::from_secs(3600));
                Ok(BusConnection::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }

    /// `PING` on a fresh connection (readiness checks).
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.connect().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }
}

/// A connection to a lone Redis or to a Redis Cluster; commands and pipelines run on it as on either.
#[derive(Clone)]
pub enum BusConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for BusConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusConnection::Single(_) => "BusConnection::Single",
            BusConnection::Cluster(_) => "BusConnection::Cluster",
        })
    }
}

impl ConnectionLike for BusConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            BusConnection::Single(conn) => conn.req_packed_command(cmd),
            BusConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            BusConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            BusConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            BusConnection::Single(conn) => conn.get_db(),
            BusConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_lone_server_and_several_are_a_cluster() {
        assert!(
            !Bus::open("redis://127.0.0.1:6379")
                .expect("url")
                .is_cluster()
        );
        let cluster = Bus::open("redis://127.0.0.1:17100, redis://127.0.0.1:17101").expect("urls");
        assert!(cluster.is_cluster());
        assert!(
            Bus::open("redis+cluster://127.0.0.1:17100")
                .expect("url")
                .is_cluster()
        );
        assert!(Bus::open("not a url").is_err());
    }
}
