//! The harness's command line, and every setting it hands to the processes it starts, in one place so
//! that they are easy to adjust (for instance when the worker grows new `WORKER_*` variables: add them to
//! [`WORKER_ENV`], or pass `--env NAME=VALUE` to try a value without editing code).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The worker's timings: short, so that a killed worker's entries are taken over and failed entries are
/// retried within the short run's budget. Read by the worker as its `WORKER_*` variables.
pub const WORKER_ENV: &[(&str, &str)] = &[
    ("WORKER_CLAIM_MIN_IDLE", "5s"),
    ("WORKER_SWEEP_INTERVAL", "500ms"),
    ("WORKER_RETRY_BASE", "500ms"),
    ("WORKER_RETRY_MAX", "10s"),
    // How long a worker's claim on an email lasts before another may take it over (issue 19's email
    // claims; ignored by workers without them). Kept at its default: shorter would let a takeover
    // race an SMTP exchange that is slow on a loaded machine.
    ("WORKER_EMAIL_LEASE", "60s"),
];

/// The relay's timings (its `RELAY_*` variables).
pub const RELAY_ENV: &[(&str, &str)] = &[("RELAY_POLL_INTERVAL", "200ms")];

/// The API's settings: no login rate limit in the way of the set-up (every customer logs in from
/// loopback), tokens that outlive a long run, a fixed key so that tokens survive an API restart.
pub const API_ENV: &[(&str, &str)] = &[
    ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000"),
    ("ACCESS_TOKEN_TTL", "24h"),
    ("REFRESH_TOKEN_TTL", "48h"),
    ("TOKEN_SYMMETRIC_KEY", "chaos-harness-key-0123456789abcd"),
];

/// Settings every process gets.
pub const COMMON_ENV: &[(&str, &str)] = &[("RUST_LOG", "info"), ("LOG_FORMAT", "pretty")];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chaos",
    // A later flag overrides an earlier one: run-chaos.sh puts its presets first.
    args_override_self = true,
    about = "StreamBank's chaos harness: real binaries, concurrent clients, random faults, then a checker"
)]
pub struct Args {
    /// Transfers to acknowledge at least (clients also keep going until every fault kind ran once).
    #[arg(long, default_value_t = 10_000)]
    pub transfers: u64,
    /// Concurrent clients, spread over REST, gRPC and the gateway.
    #[arg(long, default_value_t = 48)]
    pub clients: usize,
    /// Customers (each registered through the API, with one USD account).
    #[arg(long, default_value_t = 96)]
    pub customers: usize,
    /// Seed of every random choice (amounts, parties, fault order and times).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Which build of the binaries to run: `debug` or `release` (`$CARGO_TARGET_DIR/<profile>/`).
    #[arg(long, default_value = "debug")]
    pub profile: String,
    /// The whole run's budget in seconds: clients stop early enough to leave the quiesce its share.
    #[arg(long, default_value_t = 330)]
    pub time_limit: u64,
    /// Longest wait for the system to come to rest after the faults, in seconds (short runs here came
    /// to rest within 42 s).
    #[arg(long, default_value_t = 90)]
    pub quiesce_secs: u64,
    /// How long the SMTP sink stays down in its outage, in seconds.
    #[arg(long, default_value_t = 20)]
    pub smtp_outage_secs: u64,
    /// How long the `pg_terminate_backend` phase lasts; the API's connections are terminated every 10 s.
    #[arg(long, default_value_t = 25)]
    pub pg_phase_secs: u64,
    /// Pause between two faults, in seconds: a random time between these two.
    #[arg(long, default_value_t = 2)]
    pub gap_min_secs: u64,
    #[arg(long, default_value_t = 5)]
    pub gap_max_secs: u64,
    /// After Redis loses its data, republish the events of this many seconds before the loss (0: every
    /// event since the run started, which also covers any backlog the lost streams held).
    #[arg(long, default_value_t = 0)]
    pub republish_window_secs: u64,
    /// A client gives up retrying one transfer after this many seconds (it is then indeterminate).
    #[arg(long, default_value_t = 120)]
    pub give_up_secs: u64,
    /// The Postgres server (the harness creates and drops a database of its own on it).
    #[arg(
        long,
        env = "CHAOS_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// The name of that database (default: `chaos_<pid>`).
    #[arg(long)]
    pub database: Option<String>,
    /// Keep the database after the run (for digging).
    #[arg(long)]
    pub keep_database: bool,
    /// Where logs, Redis's data and the report go (default: a new directory under /tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Run on this Redis Cluster (its seed nodes, comma-separated, as `scripts/engines.sh redis-cluster
    /// env` prints them) instead of a Redis of the harness's own: relays and workers get
    /// `STREAM_PARTITIONS=8` and `RELAY_MIN_REPLICAS=1`, and the Redis faults become `kill -9` of a
    /// master, its replica taking over (`scripts/engines.sh redis-cluster kill-master`).
    #[arg(long)]
    pub redis_cluster: Option<String>,
    /// Extra environment for every process started, `NAME=VALUE` (repeatable; overrides the tables).
    #[arg(long = "env", value_parser = parse_env)]
    pub extra_env: Vec<(String, String)>,
    /// `$CARGO_TARGET_DIR`, where the binaries are.
    #[arg(long, env = "CARGO_TARGET_DIR", default_value = "target")]
    pub target_dir: PathBuf,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("--env wants NAME=VALUE, got {raw:?}"))
}

impl Args {
    pub fn bin_dir(&self) -> PathBuf {
        self.target_dir.join(&self.profile)
    }
    pub fn smtp_outage(&self) -> Duration {
        Duration::from_secs(self.smtp_outage_secs)
    }
    pub fn pg_phase(&self) -> Duration {
        Duration::from_secs(self.pg_phase_secs)
    }
    /// When the clients stop at the latest (from the run's start).
    pub fn client_deadline(&self) -> Duration {
        Duration::from_secs(
            self.time_limit
                .saturating_sub(self.quiesce_secs + 30)
                .max(30),
        )
    }
}
