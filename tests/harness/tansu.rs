//! tansu, a Kafka-protocol broker with in-memory storage.

use std::process::Command;
use std::time::Duration;

use super::process::{ChildProcess, Signal};
use super::{DEADLINE, tools};

/// A tansu broker on a free 127.0.0.1 port (advertised as such), storage in memory.
///
/// tansu ignores SIGTERM: it is stopped with SIGINT (then SIGKILL) on drop.
pub struct Tansu {
    process: ChildProcess,
    port: u16,
}

impl Tansu {
    /// Starts a broker and waits until it accepts TCP connections.
    ///
    /// # Panics
    /// When tansu is not installed (run tests/install.sh) or does not come up.
    pub async fn start() -> Self {
        let binary = tools::tansu();
        let mut last_output = String::new();
        // The port is picked before tansu binds it: retry if another process took it meanwhile.
        for attempt in 1..=3 {
            let port = tools::free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut command = Command::new(&binary);
            command
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("SCHEMA_REGISTRY");
            let process = ChildProcess::spawn(&format!("tansu#{attempt}"), command, Signal::Int);
            let mut tansu = Self { process, port };
            match tansu.wait_ready(DEADLINE).await {
                Ok(()) => return tansu,
                Err(err) => last_output = format!("{err}; output:\n{}", tansu.process.output()),
            }
        }
        panic!("tansu did not start: {last_output}");
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns `127.0.0.1:PORT` (Kafka `bootstrap.servers`).
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until a TCP connection to the broker succeeds; fails early when tansu exited.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = self.bootstrap_servers();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                return Err(format!("tansu exited with {status}"));
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("no TCP connection to {addr} within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the broker with SIGINT and waits for it to exit; returns true if it exited by itself.
    pub async fn stop(mut self) -> bool {
        self.process.signal(Signal::Int);
        let exited = self
            .process
            .wait_exit(Duration::from_secs(10))
            .await
            .is_some();
        if !exited {
            self.process.kill();
        }
        exited
    }

    /// Returns true while the broker runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}
