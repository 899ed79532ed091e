//! CPU time from `/proc`: this process's (the API's threads and the load generator's apart), the
//! benchmark database's Postgres backends', and the rest of the machine's.

use std::collections::BTreeMap;

/// The name of the load generator's threads, so their CPU time can be told from the API's.
pub const LOAD_THREAD: &str = "load-generator";

/// CPU time used so far by this process (every thread) and by each Postgres backend connected to the
/// benchmark database, from `/proc`. Backends of other databases (other people's tests on a shared
/// server) and Postgres's own background processes are left out.
#[derive(Debug)]
pub struct CpuSnapshot {
    /// This process, every thread (exited ones included): (user, kernel) seconds.
    own: (f64, f64),
    /// The load generator's threads: (user, kernel) seconds.
    client: (f64, f64),
    /// Seconds by process id; `None` if `/proc` cannot be listed.
    postgres: Option<BTreeMap<String, f64>>,
    /// Every CPU of the machine: (busy, all) seconds, from `/proc/stat`.
    machine: (f64, f64),
}

/// CPU seconds used between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct CpuUsed {
    /// The API: this process's threads other than the load generator's.
    pub server: f64,
    /// The part of `server` spent in the kernel (system calls: sockets, futexes, epoll).
    pub server_kernel: f64,
    pub client: f64,
    pub postgres: Option<f64>,
    /// Everything else on the machine, as a share of all its CPU time.
    pub others_share: f64,
}

/// The name, user and kernel seconds in a `/proc/.../stat` line: utime and stime are fields 14 and 15,
/// counted in USER_HZ ticks (100 per second on Linux).
fn stat_seconds(stat: &str) -> Option<(String, f64, f64)> {
    const HZ: f64 = 100.0;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 2..)?.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((comm, utime / HZ, stime / HZ))
}

impl CpuSnapshot {
    pub fn take(database: &str) -> Self {
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| stat_seconds(&stat))
            .map_or((f64::NAN, f64::NAN), |(_, user, sys)| (user, sys));
        let client = std::fs::read_dir("/proc/self/task").map_or((f64::NAN, f64::NAN), |dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
                .filter_map(|stat| stat_seconds(&stat))
                .filter(|(name, _, _)| name == LOAD_THREAD)
                .fold((0.0, 0.0), |(u, k), (_, user, sys)| (u + user, k + sys))
        });
        // "cpu  user nice system idle iowait irq softirq steal ...", in USER_HZ ticks.
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?;
                let ticks: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .take(8)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                let all: f64 = ticks.iter().sum();
                let idle = ticks.get(3)? + ticks.get(4)?;
                Some(((all - idle) / 100.0, all / 100.0))
            })
            .unwrap_or((f64::NAN, f64::NAN));
        // A backend's title: "postgres: 15/main: <user> <database> <client> <state>".
        let ours = format!(" {database} ");
        let postgres = std::fs::read_dir("/proc").ok().map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| {
                    let pid = entry.file_name().to_string_lossy().into_owned();
                    if !pid.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    let (comm, user, sys) = stat_seconds(&stat)?;
                    if comm != "postgres" {
                        return None;
                    }
                    let title = std::fs::read(entry.path().join("cmdline")).ok()?;
                    String::from_utf8_lossy(&title)
                        .contains(&ours)
                        .then_some((pid, user + sys))
                })
                .collect()
        });
        Self {
            own,
            client,
            postgres,
            machine,
        }
    }

    /// Seconds used since `before`: this process, and Postgres (what processes still alive used; one
    /// that exited in between, such as an autovacuum worker, takes its time with it).
    pub fn since(&self, before: &Self) -> CpuUsed {
        let postgres = match (&before.postgres, &self.postgres) {
            (Some(before), Some(after)) => Some(
                after
                    .iter()
                    .map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0))
                    .sum(),
            ),
            _ => None,
        };
        let own = (self.own.0 - before.own.0) + (self.own.1 - before.own.1);
        let client = (self.client.0 - before.client.0) + (self.client.1 - before.client.1);
        let server_kernel = (self.own.1 - before.own.1) - (self.client.1 - before.client.1);
        let busy = self.machine.0 - before.machine.0;
        let all = self.machine.1 - before.machine.1;
        CpuUsed {
            server: own - client,
            server_kernel,
            client,
            postgres,
            others_share: ((busy - own - postgres.unwrap_or(0.0)) / all).max(0.0),
        }
    }
}
