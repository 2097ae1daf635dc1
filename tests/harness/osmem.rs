//! osmem-server, an in-memory OpenSearch-compatible server (Elasticsearch-style API).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::{ChildProcess, Signal};
use super::{DEADLINE, eventually, tools};

/// An osmem-server on a port it picks itself (`-addr 127.0.0.1:0`), killed on drop.
pub struct Osmem {
    process: ChildProcess,
    url: String,
    pid: u64,
    version: String,
}

impl Osmem {
    /// Starts osmem-server, reads its JSON startup line (url, pid, version) and waits until
    /// `GET /` answers.
    ///
    /// # Panics
    /// When osmem-server is not installed (run tests/install.sh) or does not come up.
    pub async fn start() -> Self {
        let mut command = Command::new(tools::osmem_server());
        command.args(["-addr", "127.0.0.1:0", "-no-stdin-watch"]);
        let mut process = ChildProcess::spawn("osmem-server", command, Signal::Term);
        let line = process
            .wait_for_stdout_line("its JSON startup line", DEADLINE, |line| {
                line.trim_start().starts_with('{')
            })
            .await;
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("osmem-server startup line is not JSON ({err}): {line}"));
        let url = info["url"]
            .as_str()
            .unwrap_or_else(|| panic!("osmem-server startup line has no url: {line}"))
            .trim_end_matches('/')
            .to_owned();
        let pid = info["pid"].as_u64().unwrap_or(0);
        let version = info["version"].as_str().unwrap_or_default().to_owned();
        let osmem = Self {
            process,
            url,
            pid,
            version,
        };
        osmem.wait_ready(DEADLINE).await;
        osmem
    }

    /// Returns the base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the pid the server reported.
    pub fn reported_pid(&self) -> u64 {
        self.pid
    }

    /// Returns the pid of the process the harness started.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns the version from the startup line.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Returns the body of `GET /` (cluster info), polling until it answers 200 with JSON.
    pub async fn wait_ready(&self, timeout: Duration) -> Value {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let url = format!("{}/", self.url);
        eventually(&format!("GET {url}"), timeout, || async {
            let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("status {status}"));
            }
            response.json::<Value>().await.map_err(|e| e.to_string())
        })
        .await
    }
}
