//! A PostgreSQL server for tests (feature `test-cluster`): `MIMI_DS_POSTGRES_URL` if set (a
//! role that may `CREATE SCHEMA`; CI sets it), otherwise one throw-away cluster per test
//! process, made with `initdb` and started with `postgres` in a temporary folder, listening on
//! 127.0.0.1 only, on a free port. A watchdog shell stops it and removes the folder when the
//! test process exits. As root (CI), the server binaries run as the `postgres` user (`initdb`
//! refuses root). No binaries and no URL is a panic that says how to fix it, never a silent
//! skip.
//!
//! For tests only: the cluster runs with `fsync=off` and trusts every local connection.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The environment variable naming an existing server.
pub const URL_VARIABLE: &str = "MIMI_DS_POSTGRES_URL";

/// The test server's URL: `MIMI_DS_POSTGRES_URL`, or the URL of this process's throw-away
/// cluster (started on first use).
///
/// # Panics
/// If the variable is unset and the cluster cannot be started (no server binaries).
pub fn server_url() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => url,
        _ => start_cluster(),
    })
}

/// The server binaries' folder: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/*/bin, else wherever `initdb` is on PATH.
fn server_binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_server(dir))
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.pop() {
            return Some(dir);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_server(dir))
}

/// initdb, start `postgres` on 127.0.0.1:`port`, print `READY <folder>`, then wait for the
/// test process (`$3`) to end and stop the server and remove the folder. Nothing is written
/// to stdout or stderr after READY: the test process may be gone and its pipes closed.
const CLUSTER_SCRIPT: &str = r#"
set -u
bindir="$1"; port="$2"; testpid="$3"
dir=$(mktemp -d /tmp/mimi-ds-postgres.XXXXXX) || exit 1
if ! "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1
fi
"$bindir/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" \
    -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200 \
    >"$dir/server.log" 2>&1 &
pid=$!
ready=no
for _ in $(seq 1 300); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then ready=yes; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" != yes ]; then
    cat "$dir/server.log" >&2; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir"; exit 1
fi
echo "READY $dir"
exec >/dev/null 2>&1
while [ -d "/proc/$testpid" ]; do sleep 0.5; done
kill -INT "$pid"; wait "$pid"; rm -rf "$dir"
"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Starts the throw-away cluster of this test process (see the module documentation).
fn start_cluster() -> String {
    let Some(bindir) = server_binaries() else {
        panic!(
            "the PostgreSQL tests need a server: set {URL_VARIABLE} (e.g. \
             postgres://user:password@127.0.0.1:5432/db, a role that may CREATE SCHEMA), or \
             install the PostgreSQL server binaries (initdb, postgres; Debian/Ubuntu: \
             `apt-get install postgresql`) so the tests can start a throw-away cluster"
        );
    };
    let mut last_error = String::new();
    // A port found free may be taken before the server binds it: try a few.
    for _ in 0..3 {
        let port = free_port();
        let args = [
            bindir.to_string_lossy().into_owned(),
            port.to_string(),
            std::process::id().to_string(),
        ];
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", CLUSTER_SCRIPT, "sh"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", CLUSTER_SCRIPT, "sh"]);
            c
        };
        let mut child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the PostgreSQL test cluster from {bindir:?}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.starts_with("READY ") {
            // The script runs on as the watchdog; it is never waited for.
            std::mem::forget(child);
            return format!("postgres://postgres@127.0.0.1:{port}/postgres");
        }
        let output = child.wait_with_output().expect("the cluster script ends");
        last_error = String::from_utf8_lossy(&output.stderr).into_owned();
    }
    panic!("the PostgreSQL test cluster (binaries in {bindir:?}) did not start:\n{last_error}");
}
