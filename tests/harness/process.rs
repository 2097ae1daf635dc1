//! A child process whose output is captured line by line, signalled with `kill`, stopped on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Unix signal sent with the `kill` command (no FFI needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM (what orchestrators send).
    Term,
    /// SIGKILL (no cleanup possible).
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// A running child process.
///
/// Its stdout and stderr are read by two threads into a shared log (so the child never blocks on
/// a full pipe); stdout lines are also queued for [`ChildProcess::wait_for_stdout_line`]. On drop
/// the process is stopped (with `stop_signal` and a short grace period, then SIGKILL) and, when the
/// test is panicking, its output is printed to help diagnose the failure.
pub struct ChildProcess {
    name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    stdout_lines: Receiver<String>,
    stop_signal: Signal,
    exit_status: Option<ExitStatus>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout/stderr captured.
    ///
    /// `stop_signal` is what drop sends first (SIGKILL follows after 3 s).
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, stop_signal: Signal) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({command:?}): {err}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, stdout_lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            spawn_reader(
                format!("{name}-stdout"),
                stdout,
                "out",
                output.clone(),
                Some(tx),
            ),
            spawn_reader(
                format!("{name}-stderr"),
                stderr,
                "err",
                output.clone(),
                None,
            ),
        ];
        Self {
            name: name.to_owned(),
            child,
            output,
            stdout_lines,
            stop_signal,
            exit_status: None,
            readers,
        }
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns everything the process printed so far, lines prefixed with `out|` or `err|`.
    pub fn output(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(|e| e.into_inner());
        lines.join("\n")
    }

    /// Returns the exit status if the process has exited (without blocking).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            self.exit_status = self.child.try_wait().expect("try_wait");
        }
        self.exit_status
    }

    /// Returns true while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// Waits for the next stdout line that satisfies `pred` and returns it.
    ///
    /// # Panics
    /// When the process exits or `timeout` passes first (with the process output).
    pub async fn wait_for_stdout_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.stdout_lines.try_recv() {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(TryRecvError::Disconnected) => {
                    // stdout closed: the process is exiting or gone.
                    let status = self.wait_exit(Duration::from_secs(5)).await;
                    panic!(
                        "{} closed stdout before printing {what} (exit: {status:?}); output:\n{}",
                        self.name,
                        self.output()
                    );
                }
                Err(TryRecvError::Empty) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not print {what} within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` to the process (nothing when it has already exited).
    ///
    /// # Panics
    /// When the `kill` command cannot be run.
    pub fn signal(&mut self, signal: Signal) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .args(["-s", signal.name(), &self.pid().to_string()])
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|err| {
                panic!("cannot run `kill` (Debian package procps, see tests/install.sh): {err}")
            });
        // A failure here means the process exited in between, which callers see on wait.
        let _ = status;
    }

    /// Waits up to `timeout` for the process to exit; returns its status, or `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL and reaps the process; returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.exit_status = Some(status);
        status
    }

    /// Stops the process synchronously: `stop_signal`, up to 3 s of grace, then SIGKILL.
    fn stop_blocking(&mut self) {
        if !self.is_running() {
            return;
        }
        if self.stop_signal != Signal::Kill {
            self.signal(self.stop_signal);
            for _ in 0..150 {
                if !self.is_running() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop_blocking();
        if std::thread::panicking() {
            // Let the readers reach the end of the output (bounded: a grandchild could hold the
            // pipes open).
            for _ in 0..50 {
                if self.readers.iter().all(|r| r.is_finished()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "----- output of {} (pid {}, {:?}) -----\n{}\n----- end of {} -----",
                self.name,
                self.pid(),
                self.exit_status,
                self.output(),
                self.name
            );
        }
    }
}

fn spawn_reader(
    thread_name: String,
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    output: Arc<Mutex<Vec<String>>>,
    lines: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        output
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{prefix}| {line}"));
                        if let Some(tx) = &lines {
                            let _ = tx.send(line);
                        }
                    }
                }
            }
        })
        .expect("spawn output reader thread")
}
