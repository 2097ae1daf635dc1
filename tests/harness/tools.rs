//! Where the test tools and fixtures are.

use std::net::TcpListener;
use std::path::PathBuf;

/// Environment variable naming the tools folder (default: `.tools` at the repository root).
pub const TOOLS_DIR_VAR: &str = "PIPEWARDEN_TEST_TOOLS_DIR";

/// Returns the repository root (the root package's manifest dir).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the tools folder: `$PIPEWARDEN_TEST_TOOLS_DIR`, or `.tools` at the repository root.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os(TOOLS_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".tools"),
    }
}

/// Returns the path of a tool inside the tools folder.
///
/// # Panics
/// When the tool is not there: the message tells to run `tests/install.sh`.
pub fn tool(relative: &str) -> PathBuf {
    let path = tools_dir().join(relative);
    assert!(
        path.is_file(),
        "test tool {} is missing: run tests/install.sh (it installs the Python OTel venv, tansu \
         and osmem-server into .tools/), or point {TOOLS_DIR_VAR} at a folder that has them",
        path.display()
    );
    path
}

/// Returns the venv's Python interpreter (with the OpenTelemetry SDK installed).
pub fn python() -> PathBuf {
    tool("venv/bin/python")
}

/// Returns the tansu broker binary.
pub fn tansu() -> PathBuf {
    tool("bin/tansu")
}

/// Returns the osmem-server binary.
pub fn osmem_server() -> PathBuf {
    tool("bin/osmem-server")
}

/// Returns the path of a file in `tests/fixtures/`.
///
/// # Panics
/// When the fixture does not exist.
pub fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("tests").join("fixtures").join(name);
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot bind
/// port 0 and report the port themselves; callers retry on a clash).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
