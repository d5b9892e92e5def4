//! The engine scripts under `infra/engines/` and what a test does when the engine it needs
//! is not running.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot run {script}: {source}")]
    Spawn { script: PathBuf, source: std::io::Error },
    #[error("{script} {args} failed ({status}): {stderr}")]
    Script { script: PathBuf, args: String, status: std::process::ExitStatus, stderr: String },
    #[error("cannot start {engine}: {reason}")]
    Start { engine: &'static str, reason: String },
}

/// Picks a loopback port nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The directory of the engine scripts: `$HERALD_ENGINES_DIR`, else `infra/engines` of the
/// checkout this crate was built from.
pub fn scripts_dir() -> PathBuf {
    std::env::var_os("HERALD_ENGINES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/engines"))
}

/// Runs `infra/engines/<script> <args>` to completion; its standard output.
pub async fn run_script(script: &str, args: &[&str]) -> Result<String, EngineError> {
    let path = scripts_dir().join(script);
    let output = tokio::process::Command::new(&path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| EngineError::Spawn { script: path.clone(), source })?;
    if !output.status.success() {
        return Err(EngineError::Script {
            script: path,
            args: args.join(" "),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value of `var`, which points at a running engine (`HERALD_TEST_KAFKA`,
/// `HERALD_SCYLLA_URI`, `HERALD_TEST_REGISTRY`; `infra/test.sh` starts them and sets it).
/// Without it a test that needs the engine is skipped, saying so, for a developer's quick
/// local run; where `HERALD_REQUIRE_ENGINES` is set (CI sets it) the test fails instead,
/// since a suite that skips proves nothing.
#[allow(clippy::panic)]
pub fn required(var: &str, engine: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("HERALD_REQUIRE_ENGINES").is_some() => {
            panic!("{engine} is required ({var} is unset; infra/test.sh starts it)")
        }
        _ => {
            eprintln!(
                "skipping: {engine} is not running ({var} is unset; infra/test.sh starts it)"
            );
            None
        }
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to process `pid` with kill(1): freezing a broker or a
/// role as a stalled host would, then letting it go on.
pub fn signal(pid: u32, signal: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill {signal} {pid}: {status}")))
    }
}
