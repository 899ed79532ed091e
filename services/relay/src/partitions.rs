//! Sharing the outbox's partitions among the relays that are up, with Postgres advisory locks on one
//! dedicated connection per relay.
//!
//! - A relay is a *member* while it holds one lock of the member class (the first free slot of
//!   [`MAX_MEMBERS`]); the members are counted from `pg_locks`, in this database only.
//! - A relay *leads* partition `p` while it holds the lock `(PARTITION_CLASS, p)`. With `n` members
//!   and `P` partitions each relay's share is `ceil(P / n)`: it takes free partitions up to its share
//!   and gives back the ones above it, so 3 relays over 8 partitions settle at 3/3/2.
//! - Every lock dies with its connection, so a partition whose relay dies is free at once, and the
//!   others take it on their next pass ([`super::REBALANCE_EVERY`]).
//!
//! With one partition this is today's single leader: whoever holds partition 0 publishes, the others
//! wait.

use std::collections::BTreeSet;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use streambank_store::relay::Partition;

/// The lock class of membership (the first key of a two-key advisory lock): "SBMR".
const MEMBER_CLASS: i32 = 0x5342_4d52;
/// The lock class of partition leadership: "SBPT".
const PARTITION_CLASS: i32 = 0x5342_5054;
/// How many relays may be members at once.
pub const MAX_MEMBERS: i32 = 256;

/// The relays' fair share of `partitions` when `members` relays are up: `ceil(partitions / members)`.
pub fn share(partitions: u16, members: usize) -> usize {
    usize::from(partitions).div_ceil(members.max(1))
}

/// This relay's membership and the partitions it leads, held on one connection.
#[derive(Debug)]
pub struct Membership {
    conn: PgConnection,
    slot: i32,
    held: BTreeSet<Partition>,
}

impl Membership {
    /// Connects and takes the first free member slot.
    pub async fn join(options: &PgConnectOptions) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect_with(options).await?;
        for slot in 0..MAX_MEMBERS {
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(MEMBER_CLASS)
                .bind(slot)
                .fetch_one(&mut conn)
                .await?;
            if taken {
                return Ok(Self {
                    conn,
                    slot,
                    held: BTreeSet::new(),
                });
            }
        }
        anyhow::bail!("all {MAX_MEMBERS} relay member slots are taken")
    }

    /// This relay's member slot (partitions are tried from an offset of it, to spread first picks).
    pub fn slot(&self) -> i32 {
        self.slot
    }

    /// The partitions this relay leads.
    pub fn held(&self) -> &BTreeSet<Partition> {
        &self.held
    }

    /// How many relays are members now (this one included).
    pub async fn members(&mut self) -> anyhow::Result<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND classid::bigint = $1 AND objsubid = 2
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(i64::from(MEMBER_CLASS))
        .fetch_one(&mut self.conn)
        .await?;
        Ok(usize::try_from(count).unwrap_or(1).max(1))
    }

    /// Takes `partition` if no relay leads it; says whether it did.
    pub async fn try_take(&mut self, partition: Partition) -> anyhow::Result<bool> {
        if self.held.contains(&partition) {
            return Ok(true);
        }
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(PARTITION_CLASS)
            .bind(i32::from(partition.index))
            .fetch_one(&mut self.conn)
            .await?;
        if taken {
            self.held.insert(partition);
        }
        Ok(taken)
    }

    /// Gives `partition` back (its publishing must have stopped first).
    pub async fn release(&mut self, partition: Partition) -> anyhow::Result<()> {
        if self.held.remove(&partition) {
            let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1, $2)")
                .bind(PARTITION_CLASS)
                .bind(i32::from(partition.index))
                .fetch_one(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    /// Fails when the connection holding the locks is gone (and with it every lock).
    pub async fn check(&mut self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }

    /// Leaves: closing the connection releases every lock at once.
    pub async fn leave(self) {
        let _ = self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_so_that_every_partition_has_a_leader() {
        assert_eq!(share(8, 3), 3);
        assert_eq!(share(8, 2), 4);
        assert_eq!(share(8, 4), 2);
        assert_eq!(share(1, 3), 1);
        assert_eq!(share(8, 9), 1);
        assert_eq!(share(8, 0), 8);
    }
}
