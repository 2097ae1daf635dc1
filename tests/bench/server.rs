//! Starting, measuring and stopping the servers under test (pipewarden and rotel), each a child
//! process, optionally pinned to one core with `taskset`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::load::Endpoints;

/// A server implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Pipewarden,
    Rotel,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Pipewarden => "pipewarden",
            Target::Rotel => "rotel",
        }
    }
}

/// How to start the servers.
#[derive(Clone, Debug)]
pub struct Launch {
    pub pipewarden: PathBuf,
    pub rotel: Option<PathBuf>,
    /// Core to pin the server to (`taskset -c CORE`), if any.
    pub server_core: Option<usize>,
}

/// A running server.
pub struct Server {
    pub target: Target,
    pub endpoints: Endpoints,
    /// pipewarden's web address (API, /metrics).
    pub web: Option<SocketAddr>,
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
    log_path: PathBuf,
}

/// What stopping a server showed.
pub struct Stopped {
    /// Exit code; `None` when killed after the grace period or by a signal.
    pub exit_code: Option<i32>,
    pub killed: bool,
    pub took: Duration,
    /// WARN/ERROR lines of the server's log (at most a few, plus the count).
    pub problems: Vec<String>,
    pub problem_count: usize,
}

/// Memory of the server process, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub peak_rss_kib: u64,
    pub rss_kib: u64,
    /// Anonymous (heap) part of the current RSS; the rest is mapped files and shared memory.
    pub rss_anon_kib: u64,
}

impl Server {
    pub async fn start(target: Target, launch: &Launch) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("ingest-bench-").tempdir()?;
        let log_path = dir.path().join(format!("{}.log", target.name()));
        let log = std::fs::File::create(&log_path)?;
        let (program, args, env) = match target {
            Target::Pipewarden => {
                let env = vec![
                    (
                        "PIPEWARDEN_COLLECTOR__OTLP__GRPC_ADDRESS",
                        "127.0.0.1:0".to_owned(),
                    ),
                    (
                        "PIPEWARDEN_COLLECTOR__OTLP__HTTP_ADDRESS",
                        "127.0.0.1:0".to_owned(),
                    ),
                    ("PIPEWARDEN_WEB__ADDRESS", "127.0.0.1:0".to_owned()),
                    (
                        "PIPEWARDEN_STORE__PATH",
                        dir.path().join("store").display().to_string(),
                    ),
                ];
                (launch.pipewarden.clone(), vec!["run".to_owned()], env)
            }
            Target::Rotel => {
                let agent = launch
                    .rotel
                    .clone()
                    .ok_or_else(|| anyhow!("rotel-agent not found: run tests/install-bench.sh"))?;
                let grpc = free_port()?;
                let http = free_port()?;
                let args = vec![
                    "start".to_owned(),
                    "--otlp-grpc-endpoint".to_owned(),
                    grpc.to_string(),
                    "--otlp-http-endpoint".to_owned(),
                    http.to_string(),
                    "--exporter".to_owned(),
                    "blackhole".to_owned(),
                    "--pid-file".to_owned(),
                    dir.path().join("rotel.pid").display().to_string(),
                    "--log-file".to_owned(),
                    dir.path().join("rotel-agent.log").display().to_string(),
                ];
                (agent, args, Vec::new())
            }
        };
        let mut command = match launch.server_core {
            Some(core) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(core.to_string()).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", target.name()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut server = Server {
            target,
            endpoints: Endpoints {
                grpc: unspecified(),
                http: unspecified(),
            },
            web: None,
            child,
            pid,
            dir,
            log_path,
        };
        let ready = match target {
            Target::Pipewarden => server.await_pipewarden_listening(stdout).await,
            Target::Rotel => {
                let grpc: SocketAddr = args[2].parse()?;
                let http: SocketAddr = args[4].parse()?;
                server.endpoints = Endpoints { grpc, http };
                drain_in_background(stdout);
                server.await_ports().await
            }
        };
        if let Err(err) = ready {
            let tail = server.log_tail(20);
            let _ = server.child.start_kill();
            bail!("{} did not start: {err:#}\n{tail}", target.name());
        }
        Ok(server)
    }

    /// Reads stdout up to `pipewarden listening grpc=ADDR http=ADDR web=ADDR`.
    async fn await_pipewarden_listening(
        &mut self,
        stdout: tokio::process::ChildStdout,
    ) -> Result<()> {
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .context("no `pipewarden listening` line within 30 s")??
                .ok_or_else(|| anyhow!("stdout closed before the `listening` line"))?;
            let Some(rest) = line.split("pipewarden listening ").nth(1) else {
                continue;
            };
            let mut grpc = None;
            let mut http = None;
            for field in rest.split_whitespace() {
                match field.split_once('=') {
                    Some(("grpc", addr)) => grpc = Some(addr.parse()?),
                    Some(("http", addr)) => http = Some(addr.parse()?),
                    Some(("web", addr)) => self.web = Some(addr.parse()?),
                    _ => {}
                }
            }
            self.endpoints = Endpoints {
                grpc: grpc.ok_or_else(|| anyhow!("no grpc= in {line:?}"))?,
                http: http.ok_or_else(|| anyhow!("no http= in {line:?}"))?,
            };
            let stdout = lines.into_inner();
            drain_in_background(stdout);
            return Ok(());
        }
    }

    /// Waits until both OTLP ports accept connections.
    async fn await_ports(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for addr in [self.endpoints.grpc, self.endpoints.http] {
            loop {
                if TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if let Some(status) = self.child.try_wait()? {
                    bail!("exited with {status}");
                }
                if Instant::now() > deadline {
                    bail!("{addr} not accepting connections within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Whether the process is still running (`Err` with its status when it is not).
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited during the run: {status}", self.target.name()),
        }
    }

    /// User + system CPU time of the process so far.
    pub fn cpu_time(&self, clock_ticks_per_s: u64) -> Result<Duration> {
        process_cpu_time(&format!("/proc/{}/stat", self.pid), clock_ticks_per_s)
    }

    /// Peak and current resident memory (VmHWM, VmRSS).
    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name} in /proc status"))?;
            let kib = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("bad {name} line"))?;
            Ok(kib.parse()?)
        };
        Ok(Memory {
            peak_rss_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
            rss_anon_kib: field("RssAnon:")?,
        })
    }

    /// Fetches pipewarden's Prometheus text and returns the collector's non-zero accepted,
    /// refused and dropped counters, and the detectors' counts of what they analysed and
    /// skipped (what was accepted is not necessarily what was scored).
    pub async fn server_counters(&self) -> Result<Vec<String>> {
        let Some(web) = self.web else {
            return Ok(Vec::new());
        };
        let text = http_get(web, "/metrics").await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("pipewarden_collector_accepted_total")
                    || l.starts_with("pipewarden_collector_refused_total")
                    || l.starts_with("pipewarden_collector_dropped_total")
                    || l.starts_with("pipewarden_pipeline_queue_depth")
                    || l.starts_with("pipewarden_detector_points_scored_total")
                    || l.starts_with("pipewarden_detector_log_records_total")
                    || l.starts_with("pipewarden_detector_skipped_total")
            })
            .filter(|l| l.rsplit(' ').next().is_some_and(|v| v != "0"))
            .map(str::to_owned)
            .collect())
    }

    /// Sends SIGTERM (rotel: SIGINT, its documented stop), waits up to `grace`, then kills.
    pub async fn stop(mut self, grace: Duration) -> Result<Stopped> {
        let started = Instant::now();
        let signal = match self.target {
            Target::Pipewarden => "-TERM",
            Target::Rotel => "-INT",
        };
        let sent = std::process::Command::new("kill")
            .arg(signal)
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = self.child.start_kill();
        }
        let (status, killed) = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => (status?, !sent),
            Err(_) => {
                self.child.start_kill()?;
                (self.child.wait().await?, true)
            }
        };
        let took = started.elapsed();
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let problems: Vec<String> = log
            .lines()
            .map(strip_ansi)
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
            .collect();
        let problem_count = problems.len();
        let mut shown = problems;
        shown.truncate(5);
        drop(self.dir);
        Ok(Stopped {
            exit_code: status.code(),
            killed,
            took,
            problems: shown,
            problem_count,
        })
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// User + system CPU time of a process, from its `/proc/PID/stat` file.
pub fn process_cpu_time(stat_path: &str, clock_ticks_per_s: u64) -> Result<Duration> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name (which may contain spaces) start at field 3 (state):
    // utime and stime are fields 14 and 15.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected /proc stat format"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc stat"))?
            .parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_s as f64,
    ))
}

/// CPU time all cores of the machine spent busy (not idle or waiting for I/O), from `/proc/stat`.
pub fn machine_busy_time(clock_ticks_per_s: u64) -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = values
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(Duration::from_secs_f64(
        busy as f64 / clock_ticks_per_s as f64,
    ))
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A free 127.0.0.1 port (bound, then released).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn drain_in_background(mut stdout: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 || sink.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
}

/// Removes ANSI colour escapes from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A minimal HTTP/1.1 GET (Connection: close), returning the body as text.
async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed HTTP response"))?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok::<_, anyhow::Error>(body)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("GET timed out")?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Looks for `rotel-agent` where tests/install-bench.sh installs it.
pub fn find_rotel_agent(repo: &Path) -> Option<PathBuf> {
    let lib = repo.join(".tools/venv/lib");
    let entries = std::fs::read_dir(lib).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.is_file())
}
