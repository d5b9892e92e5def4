//! `herald clients`: the send API's callers, their keys, policies and webhooks.

use herald_ingest::IngestStores;
use herald_schemas::RequestedChannel;
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct ClientsArgs {
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClientsCommand {
    /// Create a client; its key is printed once and never stored.
    Add {
        name: String,
        /// Channels it may request (email, sms, push; repeatable); all when none is given.
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// Categories it may send (repeatable); all when none is given.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// Requests per second it may make (answered 429 with Retry-After beyond).
        #[arg(long)]
        rate: Option<f64>,
        /// What it may do with the directory API (users, devices, preferences, templates):
        /// read, or write (read and change). Nothing unless given.
        #[arg(long, value_enum)]
        directory: Option<Access>,
    },
    List,
    Revoke {
        client_id: String,
    },
    /// Send the client's notifications' events to a URL it serves, signed with a secret
    /// printed once (Herald-Signature: t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">).
    Webhook {
        client_id: String,
        #[arg(long, required_unless_present = "remove")]
        url: Option<String>,
        /// Event kinds to send (repeatable: sent, delivered, failed, ...); all when none.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Stop sending this client's events.
        #[arg(long, conflicts_with_all = ["url", "events"])]
        remove: bool,
    },
}

/// `--directory`'s values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Access {
    Read,
    Write,
}

impl Access {
    fn into_access(self) -> herald_ingest::DirectoryAccess {
        match self {
            Self::Read => herald_ingest::DirectoryAccess::Read,
            Self::Write => herald_ingest::DirectoryAccess::Write,
        }
    }
}

impl ClientsArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let stores = IngestStores::open(&config.ingest).await?;
        let clients = &stores.clients;
        match self.command {
            ClientsCommand::Add { name, channels, categories, rate, directory } => {
                if let Some(bad) = channels.iter().find(|c| !RequestedChannel::is_name(c)) {
                    anyhow::bail!("unknown channel {bad:?}: email, sms or push");
                }
                anyhow::ensure!(rate.is_none_or(|r| r > 0.0), "--rate must be above 0");
                let policy = herald_ingest::ClientPolicy {
                    channels,
                    categories,
                    rate_per_second: rate,
                    directory: directory.map(Access::into_access),
                };
                let (client, key) = clients.add_with(&name, policy).await?;
                println!("client {} ({})\nkey (shown once): {key}", client.client_id, client.name);
            }
            ClientsCommand::List => {
                for c in clients.list().await? {
                    let state = if c.revoked { "revoked" } else { "active" };
                    let all =
                        |v: &[String]| if v.is_empty() { "all".to_owned() } else { v.join(",") };
                    let rate =
                        c.policy.rate_per_second.map_or("-".to_owned(), |r| format!("{r}/s"));
                    let directory = c.policy.directory.map_or("none", |a| a.as_str());
                    println!(
                        "{}\t{}\t{state}\tchannels={}\tcategories={}\trate={rate}\tdirectory={directory}",
                        c.client_id,
                        c.name,
                        all(&c.policy.channels),
                        all(&c.policy.categories)
                    );
                }
            }
            ClientsCommand::Revoke { client_id } => {
                anyhow::ensure!(clients.revoke(&client_id).await?, "no active client {client_id}");
                println!("revoked {client_id}");
            }
            ClientsCommand::Webhook { client_id, url, events, remove } => {
                let known = clients.list().await?.iter().any(|c| c.client_id == client_id);
                anyhow::ensure!(known, "no client {client_id} (herald clients list)");
                let registry = &stores.webhooks;
                match url {
                    Some(url) if !remove => {
                        let webhook = registry.set(&client_id, &url, &events).await?;
                        let kinds =
                            if events.is_empty() { "all".into() } else { events.join(", ") };
                        println!("webhook of {client_id}: {url} ({kinds} events)");
                        println!("signing secret (shown once): {}", webhook.secret);
                    }
                    _ => {
                        anyhow::ensure!(
                            registry.remove(&client_id).await?,
                            "{client_id} has no webhook"
                        );
                        println!("removed the webhook of {client_id}");
                    }
                }
            }
        }
        Ok(())
    }
}
