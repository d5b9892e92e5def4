//! `herald acls`: the Kafka ACLs each role and operator command needs under this
//! configuration's names, as a table or as `kafka-acls.sh` commands.

use herald_wiring::acls::{self, Client};
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct AclsArgs {
    /// The roles and commands to list (default: all of them).
    #[arg(value_enum)]
    clients: Vec<Client>,
    /// The principal to grant to (default: User:herald-ingest, User:herald-enricher,
    /// User:herald-dispatch for the roles; User:herald-setup-check for topics-check;
    /// User:herald-operator for the other commands).
    #[arg(long)]
    principal: Option<String>,
    /// Print `kafka-acls.sh --add` commands instead of a table.
    #[arg(long, conflicts_with = "markdown")]
    commands: bool,
    /// Print Markdown tables (as docs/production.md shows them) instead of a table.
    #[arg(long)]
    markdown: bool,
    /// The `--command-config` file the commands name: the client properties of a principal
    /// allowed to alter ACLs.
    #[arg(long, default_value = "admin.properties", requires = "commands")]
    command_config: String,
}

impl AclsArgs {
    #[allow(clippy::print_stdout)]
    pub fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let clients = if self.clients.is_empty() { Client::ALL.to_vec() } else { self.clients };
        let mut out = Vec::new();
        for client in clients {
            let principal = self.principal.as_deref().unwrap_or(client.default_principal());
            out.push(if self.commands {
                acls::commands(config, client, principal, &self.command_config)
            } else if self.markdown {
                acls::markdown(config, client)
            } else {
                acls::table(config, client, principal)
            });
        }
        print!("{}", out.join("\n"));
        Ok(())
    }
}
