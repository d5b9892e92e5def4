//! What a fault run found, as `herald chaos` prints it and writes it as JSON.

use serde::Serialize;

use super::watch::{self, Unconsumed, Unfinished};

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub notifications: usize,
    pub sent: usize,
    pub delivered: usize,
    pub lost: usize,
    /// Accepted, neither delivered nor dead-lettered when the run ended, but still durable in
    /// a topic a group has not finished (see `unfinished`): late, not lost.
    pub late: usize,
    /// The partitions a role's group had not finished when the run ended, and how many late
    /// notifications each holds.
    pub unfinished: Vec<Unfinished>,
    /// The longest a partition with records due went unconsumed (its group's committed
    /// offset still), from the first delivery until the run ended.
    pub max_unconsumed: Unconsumed,
    /// The ids of the first lost notifications (the send API accepted them), to follow
    /// through the topics and the roles' logs.
    pub lost_ids: Vec<String>,
    pub duplicates: u64,
    /// Deliveries whose claim was taken over from a killed dispatcher: the outcome of the
    /// first attempt unknown, the one window where a duplicate is possible.
    pub unknown_outcomes: usize,
    /// Duplicates of notifications outside that window: must be 0.
    pub unexplained_duplicates: u64,
    pub dead_lettered: usize,
    /// The broker the run used: `tansu`, or `kafka (3 brokers)`, and the group protocol.
    pub broker: String,
    /// Role processes SIGKILLed.
    pub kills: usize,
    /// Brokers SIGKILLed while leading the most partitions (and restarted).
    pub broker_kills: usize,
    /// Restarts of every broker, one after another.
    pub rolling_restarts: usize,
    pub max_stall_seconds: f64,
    /// When the longest stall began, in seconds from the first send.
    pub max_stall_began_at_seconds: f64,
    /// Each fault, at its second from the first send.
    pub faults: Vec<(f64, String)>,
    /// Deliveries in each second of the run.
    pub deliveries_per_second: Vec<u64>,
    pub elapsed_seconds: f64,
    pub delivered_per_second: f64,
}

impl ChaosReport {
    pub fn render(&self) -> String {
        format!(
            "broker        {}\nnotifications {}\nsent (202)    {}\ndelivered     {}\nlost          {}{}\nlate          {}\n{}duplicates    {} (unknown outcomes {}, outside them {})\ndead-lettered {}\nrole kills    {}\nbroker kills  {} (leaders, SIGKILL)\nrolling restarts {}\nmax stall     {:.1} s (from {:.1} s)\nunconsumed    {:.1} s at most ({} partition {}, from {:.1} s)\nelapsed       {:.1} s ({:.0} deliveries/s)\n{}",
            self.broker,
            self.notifications,
            self.sent,
            self.delivered,
            self.lost,
            if self.lost_ids.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.lost_ids.join(", "))
            },
            self.late,
            watch::render(&self.unfinished),
            self.duplicates,
            self.unknown_outcomes,
            self.unexplained_duplicates,
            self.dead_lettered,
            self.kills,
            self.broker_kills,
            self.rolling_restarts,
            self.max_stall_seconds,
            self.max_stall_began_at_seconds,
            self.max_unconsumed.seconds,
            self.max_unconsumed.topic,
            self.max_unconsumed.partition,
            self.max_unconsumed.began_at_seconds,
            self.elapsed_seconds,
            self.delivered_per_second,
            self.faults
                .iter()
                .map(|(at, what)| format!("  {at:6.1} s  {what}\n"))
                .collect::<String>()
        )
    }
}
