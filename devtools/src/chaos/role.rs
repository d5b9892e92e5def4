//! A role process of a fault run: started from the run's configuration file, logging to a
//! file it appends to across restarts, SIGKILLed when the run says so or when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

pub(super) struct Role {
    pub(super) args: Vec<&'static str>,
    pub(super) log: PathBuf,
    pub(super) child: Option<Child>,
    /// Joins classic groups under its name (`kafka.consumer.instance_id`), so that a
    /// restart takes its partitions back at once. Not on Tansu, whose coordinator revokes a
    /// static member's partitions as soon as it assigns them.
    pub(super) static_member: bool,
}

impl Role {
    /// The process's name, from its log file (`enrich`, `dispatch-0`).
    pub(super) fn name(&self) -> String {
        self.log.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    pub(super) fn start(&mut self, config_file: &Path) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the herald binary")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(exe);
        if self.static_member {
            command.env("HERALD__KAFKA__CONSUMER__INSTANCE_ID", self.name());
        }
        let child = command
            .args(&self.args)
            .env("HERALD_CONFIG", config_file)
            .env(
                "RUST_LOG",
                std::env::var("HERALD_CHAOS_ROLE_LOG")
                    .unwrap_or_else(|_| "warn,librdkafka=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting herald {:?}", self.args))?;
        self.child = Some(child);
        Ok(())
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}
