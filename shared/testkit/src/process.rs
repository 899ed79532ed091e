//! The real binaries as child processes, for tests that need the API, the relay, the worker and the
//! trace viewer running side by side as they do under `scripts/dev.sh`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where [`free_port`] looks: below the kernel's ephemeral range (32768 and up on Linux), so that no
/// outgoing connection (to Postgres, to Redis, between two children) is given the port between this
/// call and the child's `bind`; and clear of the fixed ports of the engines and smoke runs (5432, 6379,
/// 17100-17105 and their cluster-bus ports 27100-27105, 18xxx, 55440).
const PORTS: std::ops::Range<u32> = 20_000..27_000;

/// A port free on 127.0.0.1 right now that no test process has handed out in the last
/// [`RESERVED_FOR`]. Each process walks [`PORTS`] from a start of its own and skips ports somebody
/// listens on; a port it takes is reserved for the others by a file in `$TMPDIR/streambank-ports`
/// (created only if absent), since nextest runs tests as processes side by side and two of them
/// could otherwise pick one port before either child binds it.
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let span = PORTS.end - PORTS.start;
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(std::process::id().wrapping_mul(7_919).wrapping_add(nanos) % span)
    });
    let reservations = std::env::temp_dir().join("streambank-ports");
    let _ = std::fs::create_dir_all(&reservations);
    for _ in 0..span {
        let port = PORTS.start + next.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("PORTS is within u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && reserve(&reservations.join(port.to_string()))
        {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {PORTS:?}")
}

/// How long a port handed out by [`free_port`] stays reserved for the process that took it.
const RESERVED_FOR: Duration = Duration::from_secs(60);

/// Takes the reservation file `path`: a new one, or one older than [`RESERVED_FOR`]. Where the files
/// cannot be written at all, the port is taken without one.
fn reserve(path: &std::path::Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    match create() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let stale = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > RESERVED_FOR));
            // Of two processes that find it stale, the one whose create wins takes it.
            stale && std::fs::remove_file(path).is_ok() && create().is_ok()
        }
        Err(_) => true,
    }
}

/// The path of workspace binary `name` (`streambank-api`, `bankctl`, ...), built by cargo into the same
/// target directory as the running test. `cargo nextest run --workspace` builds every binary first;
/// when one is missing (a test run with `-p`), it is built here with the cargo that built the test.
pub fn binary(name: &str, package: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap_or_else(|e| panic!("the test's own path: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", test.display()))
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(&cargo)
            .args(["build", "--locked", "-p", package, "--bin", name])
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo} to build {name}: {e}"));
        assert!(status.success(), "cargo build -p {package} failed");
        assert!(
            path.exists(),
            "{} still missing after the build",
            path.display()
        );
    }
    path
}

/// A child process that is killed when the test ends, pass or fail, and whose stderr goes to a file
/// printed when the test fails (see [`Spawned::stderr`]).
#[derive(Debug)]
pub struct Spawned {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `program` with `env` added to the test's environment; stdout is dropped.
    pub fn start(name: &str, program: &std::path::Path, env: &[(&str, String)]) -> Self {
        let log =
            std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut command = Command::new(program);
        command.stdout(Stdio::null()).stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test (with the process's stderr) when it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.stderr());
        }
    }

    /// Asks the process to stop with SIGTERM and waits up to `timeout` for it.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits until a TCP connection to `addr` succeeds, failing the test after `timeout`.
pub async fn wait_for_port(process: &mut Spawned, addr: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        process.assert_running();
        assert!(
            started.elapsed() < timeout,
            "{} did not listen on {addr} within {timeout:?}:\n{}",
            process.name,
            process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `streambank-api`, `streambank-relay` and `streambank-worker` as processes on one database, with
/// their own stream prefix, on free loopback ports.
#[derive(Debug)]
pub struct Stack {
    pub api: Spawned,
    pub relay: Spawned,
    pub worker: Spawned,
    /// The REST listener, `http://127.0.0.1:<port>`.
    pub rest_base: String,
    pub stream_prefix: String,
    /// What every process of the stack is started with.
    env: Vec<(String, String)>,
}

impl Stack {
    /// Starts the three on `database_url`; `extra` is added to each one's environment (for example
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, or a `REDIS_URL` naming a cluster). Returns when the API
    /// listens.
    pub async fn start(database_url: &str, extra: &[(&str, String)]) -> Self {
        let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let stream_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let http = format!("127.0.0.1:{}", free_port());
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.to_owned()),
            ("REDIS_URL", redis),
            ("STREAM_PREFIX", stream_prefix.clone()),
            ("PUBLIC_BASE_URL", format!("http://{http}")),
            ("RUST_LOG", "info".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let mut api = Self::spawn_with(
            &env,
            "api",
            &[
                ("HTTP_ADDR", http.clone()),
                ("GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
                ("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port())),
                ("METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
                ("AUTH_RATE_LIMIT_PER_MINUTE", "100000".to_owned()),
            ],
        );
        let relay = Self::spawn_with(&env, "relay", &[]);
        let worker = Self::spawn_with(&env, "worker", &[]);
        wait_for_port(&mut api, &http, Duration::from_secs(30)).await;
        Self {
            api,
            relay,
            worker,
            rest_base: format!("http://{http}"),
            stream_prefix,
            env,
        }
    }

    /// One more `streambank-relay` or `streambank-worker` (`kind`) like the stack's own, with a
    /// health listener of its own.
    pub fn spawn(&self, kind: &str) -> Spawned {
        Self::spawn_with(&self.env, kind, &[])
    }

    /// `streambank-{kind}` with `env`, then `more` (the relay and the worker get a `HEALTH_ADDR`).
    fn spawn_with(env: &[(String, String)], kind: &str, more: &[(&str, String)]) -> Spawned {
        let name = format!("streambank-{kind}");
        let health = format!("127.0.0.1:{}", free_port());
        let mut all: Vec<(&str, String)> =
            env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if kind != "api" {
            all.push(("HEALTH_ADDR", health));
        }
        all.extend(more.iter().cloned());
        Spawned::start(&name, &binary(&name, &name), &all)
    }

    /// Fails the test (with their stderr) if any of the three has exited.
    pub fn assert_running(&mut self) {
        self.api.assert_running();
        self.relay.assert_running();
        self.worker.assert_running();
    }
}
