//! The docs cannot drift from the code: every TOML snippet in README.md and docs/ is read
//! into the configuration types (unknown keys refused, required ones needed), and every
//! `herald …` command line they show is parsed by the real command-line parser.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use clap::error::ErrorKind;
use herald::cli::Cli;
use herald_wiring::config::HeraldConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md and every page of docs/, with their text.
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let name = |p: &Path| p.strip_prefix(root()).unwrap_or(p).display().to_string();
    pages.iter().map(|p| (name(p), std::fs::read_to_string(p).unwrap())).collect()
}

/// A fenced block: its language, the line it starts on, its text.
struct Fence {
    lang: String,
    line: usize,
    body: String,
}

/// The fenced blocks of `text`, and `text` with them blanked out.
fn fences(text: &str) -> (Vec<Fence>, String) {
    let (mut fences, mut prose) = (Vec::new(), String::new());
    let mut open: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open =
                    Some(Fence { lang: lang.trim().to_owned(), line: i + 1, body: String::new() });
            }
            (Some(_), Some(_)) => fences.extend(open.take()),
            (Some(fence), None) => {
                fence.body.push_str(line);
                fence.body.push('\n');
            }
            (None, None) => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
        if open.is_some() {
            prose.push('\n');
        }
    }
    (fences, prose)
}

/// A snippet whose first line is a comment naming a table (`# [dispatch.providers.fcm]`) is
/// a fragment of that table.
fn as_whole_file(snippet: &str) -> String {
    let first = snippet.lines().next().unwrap_or_default().trim();
    match first.strip_prefix('#').map(str::trim) {
        Some(table) if table.starts_with('[') && table.ends_with(']') => {
            format!("{table}\n{snippet}")
        }
        _ => snippet.to_owned(),
    }
}

/// Why a TOML snippet is not configuration Herald reads, if it is not.
fn config_error(snippet: &str) -> Option<String> {
    toml::from_str::<HeraldConfig>(&as_whole_file(snippet)).err().map(|e| e.to_string())
}

#[test]
fn every_toml_snippet_in_the_docs_is_configuration_herald_reads() {
    let mut checked = 0;
    for (page, text) in pages() {
        for fence in fences(&text).0.into_iter().filter(|f| f.lang == "toml") {
            checked += 1;
            if let Some(error) = config_error(&fence.body) {
                panic!(
                    "{page}:{}: the TOML snippet is not Herald configuration: {error}",
                    fence.line
                );
            }
        }
    }
    assert!(checked >= 5, "only {checked} TOML snippets: are the docs' examples gone?");
}

#[test]
fn a_snippet_with_an_unknown_key_or_a_missing_one_is_caught() {
    let good = "[dispatch.providers.sms]\nkind = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = { env = \"TWILIO_TOKEN\" }\n";
    assert_eq!(config_error(good), None);
    assert!(config_error(&good.replace("account_sid", "account_id")).is_some(), "unknown key");
    assert!(config_error(&good.replace("account_sid = \"AC1\"\n", "")).is_some(), "missing key");
    let fragment = "# [kafka]\nbootstrap_servers = \"kafka:9093\"\n";
    assert_eq!(config_error(fragment), None, "a fragment names its table");
    assert!(config_error("bootstrap_servers = \"kafka:9093\"\n").is_some(), "else it is top level");
}

/// Shell words of a command line: quotes group, a `<placeholder with spaces>` is one word.
fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut angle) = (Vec::new(), String::new(), None, false);
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() && !angle => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                angle = match c {
                    '<' => true,
                    '>' => false,
                    _ => angle,
                };
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// A synopsis as a command line: `[--flag value]` kept as `--flag value`, `[words]` that are
/// not flags dropped, `a|b` as `a`, `...` dropped.
fn from_synopsis(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_optional_words = false;
    for word in words {
        let opens = word.starts_with('[');
        let closes = word.ends_with(']') || word.ends_with("]...");
        let bare = word.trim_start_matches('[').trim_end_matches("...").trim_end_matches(']');
        if opens && !bare.starts_with('-') {
            in_optional_words = !closes;
            continue;
        }
        if in_optional_words {
            in_optional_words = !closes;
            continue;
        }
        let dots = ["...", "…"].contains(&bare);
        if dots && out.last().is_some_and(|w: &String| w.starts_with("--")) {
            // `--topic ...`: the value is the reader's.
            out.push("<value>".to_owned());
            continue;
        }
        let bare = bare.trim_end_matches("...").trim_end_matches('…');
        if bare.is_empty() {
            continue;
        }
        let first =
            if bare.starts_with('<') { bare } else { bare.split('|').next().unwrap_or(bare) };
        out.push(first.to_owned());
    }
    out
}

/// The `herald …` invocation in a shell line, from the word `herald` (or a path to it) on,
/// up to a pipe, `&&`, `;`, `&` or a comment.
fn invocation(line: &str) -> Option<Vec<String>> {
    let line = line.find(" #").map_or(line, |comment| &line[..comment]);
    let words = words(line);
    let start = words.iter().position(|w| w == "herald" || w.ends_with("/herald"))?;
    let mut command = vec!["herald".to_owned()];
    for word in &words[start + 1..] {
        if ["|", "&&", ";", "&", "||", ">", "2>&1"].contains(&word.as_str())
            || word.starts_with('#')
        {
            break;
        }
        command.push(word.clone());
    }
    Some(from_synopsis(command))
}

/// A value the docs write as a stand-in for the reader's own: `<name>`, `FILE`, `RFC3339`,
/// a synopsis's one-letter `c`.
fn is_placeholder(value: &str) -> bool {
    value.starts_with('<')
        || value.starts_with('$')
        || (value.len() == 1 && value.chars().all(|c| c.is_ascii_lowercase()))
        || (value.len() > 1 && value.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// Why the parser refuses `command`, unless the refusal is one the docs' way of writing
/// allows: a placeholder where a checked value goes, and (for a command named in prose, not a
/// whole command line) a subcommand, argument or value left for the reader.
fn refusal(command: &[String], whole_line: bool) -> Option<String> {
    let error = Cli::try_parse_from(command).err()?;
    let text = error.to_string();
    let last = command.last().map_or("", String::as_str);
    let allowed = match error.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            command.iter().any(|w| is_placeholder(w) && text.contains(w.as_str()))
                || (!whole_line && last.starts_with("--") && text.contains(&format!("'{last}")))
        }
        ErrorKind::MissingSubcommand
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingRequiredArgument => !whole_line,
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => true,
        _ => false,
    };
    (!allowed).then_some(text)
}

/// Every `herald …` the docs show: (page:line, words, a whole command line or a mention).
fn shown_commands() -> Vec<(String, Vec<String>, bool)> {
    let mut shown = Vec::new();
    for (page, text) in pages() {
        let (fences, prose) = fences(&text);
        for fence in
            fences.iter().filter(|f| ["sh", "bash", "console", ""].contains(&f.lang.as_str()))
        {
            let body = fence.body.replace("\\\n", " ");
            for (i, line) in body.lines().enumerate() {
                let line = line.trim_start_matches("$ ").trim();
                if line.starts_with('#') {
                    continue;
                }
                if let Some(command) = invocation(line) {
                    shown.push((format!("{page}:{}", fence.line + 1 + i), command, true));
                }
            }
        }
        for line in prose.split('`').skip(1).step_by(2) {
            if line.starts_with("herald ") || line == "herald" {
                let command = from_synopsis(words(line));
                shown.push((page.clone(), command, false));
            }
        }
    }
    shown
}

#[test]
fn every_herald_command_line_in_the_docs_parses_with_the_real_parser() {
    let shown = shown_commands();
    let mut refused = Vec::new();
    for (place, command, whole_line) in &shown {
        if let Some(error) = refusal(command, *whole_line) {
            let first = error.lines().next().unwrap_or_default().to_owned();
            refused.push(format!("{place}: `{}`: {first}", command.join(" ")));
        }
    }
    assert!(
        refused.is_empty(),
        "the docs show command lines herald refuses:\n{}",
        refused.join("\n")
    );
    assert!(
        shown.len() >= 100,
        "only {} command lines found: is the extraction broken?",
        shown.len()
    );
}

#[test]
fn a_command_line_with_an_unknown_flag_or_subcommand_is_caught() {
    let parse = |line: &str, whole| refusal(&invocation(line).unwrap(), whole);
    assert_eq!(parse("target/release/herald bench e2e --users 10000", true), None);
    assert!(parse("herald bench e2e --user 10000", true).is_some(), "unknown flag");
    assert!(parse("herald benches e2e", false).is_some(), "unknown subcommand");
    assert_eq!(parse("herald dlq show <partition:offset>", true), None, "a placeholder");
    assert_eq!(parse("herald dlq", false), None, "a command named in prose");
    assert!(parse("herald dlq", true).is_some(), "a whole line must be complete");
    let synopsis = "herald dlq list [--channel c] [--class poison|permanent] [--since 2h|RFC3339]";
    assert_eq!(parse(synopsis, true), None);
    assert!(parse("herald dlq list [--klass poison|permanent]", true).is_some());
    assert_eq!(
        parse("HERALD__INGEST__LISTEN=127.0.0.1:8090 herald --config h.toml ingest &", true),
        None
    );
}

/// docs/production.md's ACL tables are what `herald acls --markdown` prints for the default
/// configuration: the list a security review reads is the list the roles are tested with.
#[test]
fn the_acl_tables_of_the_production_page_are_what_herald_acls_prints() {
    let page = std::fs::read_to_string(root().join("docs/production.md")).unwrap();
    let start = "<!-- herald acls --markdown: generated, checked by herald/tests/e2e/docs.rs -->\n";
    let shown = page.split_once(start).expect("the production page has the ACL tables").1;
    let shown = shown.split_once("<!-- /herald acls -->").expect("the tables end").0;
    let config = HeraldConfig::default();
    let printed: Vec<String> = herald_wiring::acls::Client::ALL
        .iter()
        .map(|client| herald_wiring::acls::markdown(&config, *client))
        .collect();
    assert_eq!(shown, printed.join("\n"), "regenerate with `herald acls --markdown`");
}
