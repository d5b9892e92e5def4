//! `herald dlq`: the dead-letter topic listed, shown and redriven (the work lives in
//! `herald_wiring::dlq`).

use anyhow::Context;
use herald_runtime::kafka::ChangeMode;
use herald_schemas::Channel;
use herald_wiring::config::HeraldConfig;
use herald_wiring::dlq;

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(clap::Args, Debug)]
struct DlqFilterArgs {
    /// Only dead letters of this channel (email, sms, ios, android).
    #[arg(long)]
    channel: Option<Channel>,
    /// Only reasons containing this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only this class.
    #[arg(long, value_enum)]
    class: Option<dlq::Class>,
    /// Only those given up by this consumer group (herald-enricher, or enricher).
    #[arg(long)]
    group: Option<String>,
    /// Failed at or after: RFC 3339 time, or a duration ago (e.g. 2h).
    #[arg(long)]
    since: Option<String>,
    /// Failed before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    until: Option<String>,
}

impl DlqFilterArgs {
    fn filter(self, config: &HeraldConfig) -> anyhow::Result<dlq::Filter> {
        let group = match &self.group {
            Some(given) => {
                herald_wiring::groups::resolve_group(config, given, &[])?.map(|g| g.name)
            }
            None => None,
        };
        Ok(dlq::Filter {
            channel: self.channel.map(|c| c.as_str().to_owned()),
            reason: self.reason,
            class: self.class,
            group,
            since: self.since.as_deref().map(dlq::parse_time).transpose()?,
            until: self.until.as_deref().map(dlq::parse_time).transpose()?,
        })
    }
}

#[derive(clap::Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
    },
    /// Show one dead letter, headers and decoded payload.
    Show {
        /// partition:offset, as `list` prints it.
        position: String,
    },
    /// Put dead letters back: a channel's into its first retry tier, others into their
    /// origin topic. Poison records (undecodable) are left alone unless `--class poison`, and
    /// dead letters redriven before unless `--again`.
    Redrive {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Count what would be redriven, produce nothing.
        #[arg(long)]
        dry_run: bool,
        /// Redrive dead letters that were redriven before too.
        #[arg(long)]
        again: bool,
        /// At most this many records a second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
    },
}

impl DlqArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let kafka = config.kafka.clone();
        match self.command {
            DlqCommand::List { filter } => {
                let filter = filter.filter(config)?;
                let letters =
                    tokio::task::spawn_blocking(move || dlq::read(&kafka, &filter)).await??;
                print!("{}", dlq::render_list(&letters));
            }
            DlqCommand::Show { position } => {
                let (partition, offset) = position
                    .split_once(':')
                    .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                    .context("position is partition:offset, e.g. 0:17")?;
                let letter =
                    tokio::task::spawn_blocking(move || dlq::fetch(&kafka, partition, offset))
                        .await??;
                let codec = herald_schemas::AvroCodec::new(&config.schema_registry.resolve()?)?;
                print!("{}", dlq::render_one(&letter, &codec).await);
            }
            DlqCommand::Redrive { filter, dry_run, again, rate } => {
                let poison_asked = filter.class == Some(dlq::Class::Poison);
                let filter = filter.filter(config)?;
                let reader = kafka.clone();
                let letters =
                    tokio::task::spawn_blocking(move || dlq::read(&reader, &filter)).await??;
                let scope = dlq::RedriveScope { poison: poison_asked, again };
                let (letters, left) = dlq::to_redrive(letters, scope);
                let progress = indicatif::ProgressBar::new(letters.len() as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} {per_sec} eta {eta}",
                ) {
                    progress.set_style(style);
                }
                let mode = ChangeMode::from_dry_run(dry_run);
                let sent = dlq::redrive(&kafka, &letters, rate, mode, &progress).await?;
                progress.finish_and_clear();
                let verb = if dry_run { "would redrive" } else { "redrove" };
                println!("{verb} {sent} dead letter(s)");
                print!("{}", left.render());
            }
        }
        Ok(())
    }
}
