//! An HTTP forward proxy, tinyproxy (a Debian package), as a host that reaches its services
//! through one: the tests read its log to see which requests went through it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EngineError;

/// A running tinyproxy on a loopback port, killed when dropped.
#[derive(Debug)]
pub struct Tinyproxy {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy with its configuration and log in `dir`, and waits until it accepts
    /// connections.
    pub fn start(dir: &Path) -> Result<Self, EngineError> {
        let failed = |reason: String| EngineError::Start { engine: "tinyproxy", reason };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let port = crate::free_port().map_err(|e| failed(e.to_string()))?;
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        let text = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Info\n\
             LogFile \"{}\"\nMaxClients 50\n",
            log.display()
        );
        std::fs::write(&config, text).map_err(|e| failed(e.to_string()))?;
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed(format!("tinyproxy (apt-get install tinyproxy): {e}")))?;
        let proxy = Self { child, url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(failed(format!("not listening on {port} after 10 s")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proxy)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests it carried so far, one line each as its log records them (`GET
    /// http://host/path`, `CONNECT host:port`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| line.split_once("Request (file descriptor ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split_once("): ").map(|(_, request)| request.to_owned()))
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
