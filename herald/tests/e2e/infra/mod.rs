//! The files under infra/ that Herald does not run itself but operators do: the Grafana
//! dashboard, the Prometheus alert rules and scrape configuration, the compose stack and the
//! Kubernetes manifests. Each is parsed, and checked against what Herald actually is: the
//! metrics it exports, the ports it serves, its consumer groups, topics and partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use herald_runtime::metrics::MetricKind;
use herald_schemas::Channel;
use herald_wiring::config::HeraldConfig;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize as _;
use serde_json::Value;

mod kubernetes;

fn infra(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra").join(path)
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    yaml_text(&text, &path.display().to_string())
}

/// Each document of a YAML stream (`source` names it in a failure).
fn yaml_text(text: &str, source: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| {
            let mut value = serde_yaml_ng::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            value.apply_merge().unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The metric names an expression reads.
struct Selectors(BTreeSet<String>);

impl ExprVisitor for Selectors {
    type Error = String;
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = selector.name.clone().ok_or("a selector without a metric name")?;
        self.0.insert(name);
        Ok(true)
    }
}

/// Grafana's variables replaced by values PromQL accepts.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$group", ".*")
        .replace("$channel", ".*")
}

/// Why `expr` is not a valid query over Herald's metrics, if it is not.
fn check_expr(expr: &str, catalog: &BTreeMap<String, MetricKind>) -> Result<(), String> {
    let parsed = parser::parse(&as_promql(expr)).map_err(|e| format!("{expr}: {e}"))?;
    let mut selectors = Selectors(BTreeSet::new());
    walk_expr(&mut selectors, &parsed).map_err(|e| format!("{expr}: {e}"))?;
    for name in selectors.0 {
        let exported = catalog.get(&name).is_some_and(|k| *k != MetricKind::Histogram)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| catalog.get(base) == Some(&MetricKind::Histogram))
            })
            // Prometheus's own: whether a scrape of the role succeeded.
            || name == "up";
        if !exported {
            return Err(format!("{name} (in {expr}) is not a metric Herald exports"));
        }
    }
    Ok(())
}

fn catalog() -> BTreeMap<String, MetricKind> {
    herald_wiring::metrics_catalog().into_iter().collect()
}

#[test]
fn the_metrics_check_refuses_names_herald_does_not_export() {
    let catalog = catalog();
    assert!(catalog.contains_key("herald_consumer_lag"), "{catalog:?}");
    check_expr("sum by (group) (herald_consumer_lag)", &catalog).unwrap();
    check_expr("rate(herald_end_to_end_seconds_bucket[5m])", &catalog).unwrap();
    assert!(check_expr("rate(herald_deliveries_sent_total[5m])", &catalog).is_err());
    assert!(check_expr("rate(herald_consumer_lag_bucket[5m])", &catalog).is_err(), "a gauge");
    assert!(check_expr("sum(rate(herald_deliveries_total[5m])", &catalog).is_err(), "syntax");
}

#[test]
fn every_dashboard_query_reads_only_metrics_herald_exports() {
    let catalog = catalog();
    let text = std::fs::read_to_string(infra("grafana/dashboards/herald.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
        }
    }
    assert!(queries.len() >= 15, "{} queries", queries.len());
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|(title, expr)| {
            check_expr(expr, &catalog).err().map(|e| format!("{title}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            let metric = query.trim_start_matches("label_values(").split(',').next().unwrap();
            assert!(catalog.contains_key(metric.trim()), "variable {query}");
        }
    }
    // What an SRE opens the dashboard for is on it.
    let all: String = queries.iter().map(|(_, e)| e.as_str()).collect();
    for needed in [
        "herald_consumer_lag",
        "herald_deliveries_total",
        "herald_dead_letters_total",
        "herald_end_to_end_seconds_bucket",
        "herald_http_requests_total",
        "herald_enricher_outcomes_total",
    ] {
        assert!(all.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn every_alert_rule_is_valid_promql_over_exported_metrics_with_severity_summary_and_runbook() {
    let catalog = catalog();
    let rules = yaml_documents(&infra("prometheus/alerts.yml")).remove(0);
    let operating = std::fs::read_to_string(infra("../docs/operating.md")).unwrap();
    // GitHub's anchors: a heading lowercased, spaces to '-', other punctuation dropped.
    let anchors: BTreeSet<String> = operating
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let mut names = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            check_expr(rule["expr"].as_str().unwrap(), &catalog)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                ["critical", "warning", "info"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap()),
                "{name}"
            );
            assert!(rule["annotations"]["summary"].is_string(), "{name}");
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
            let anchor = runbook.strip_prefix("docs/operating.md#");
            assert!(
                anchor.is_some_and(|a| anchors.contains(a)),
                "{name}: runbook_url {runbook:?} is no page of docs/operating.md ({anchors:?})"
            );
            if let Some(wait) = rule["for"].as_str() {
                promql_parser::util::parse_duration(wait).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            names.push(name);
        }
    }
    // The four the operations issue asks for.
    for needed in [
        "HeraldConsumerLagGrowing",
        "HeraldDeadLettersGrowing",
        "HeraldProviderErrorRate",
        "HeraldNoProgress",
    ] {
        assert!(names.iter().any(|n| n == needed), "missing alert {needed}: {names:?}");
    }
}

/// The Kafka version the test suite runs on: the one `infra/engines/kafka.pom.xml` pins.
fn kafka_version_tested() -> String {
    let pom = std::fs::read_to_string(infra("engines/kafka.pom.xml")).unwrap();
    let after = pom.split("<artifactId>kafka_2.13</artifactId>").nth(1).unwrap();
    let version = after.split("<version>").nth(1).unwrap().split("</version>").next().unwrap();
    version.trim().to_owned()
}

fn port_of(addr: std::net::SocketAddr) -> u16 {
    addr.port()
}

#[test]
fn the_compose_stack_runs_every_role_and_prometheus_scrapes_each_where_it_serves_metrics() {
    let compose = yaml_documents(&infra("compose.yaml")).remove(0);
    let config = HeraldConfig::load(Some(&infra("compose/herald.toml"))).unwrap();
    let ops_port = port_of(config.ops.listen.expect("consumer roles serve /metrics"));
    let ingest_port = port_of(config.ingest.listen);
    let services = compose["services"].as_object().unwrap();

    let mut expected_targets = BTreeSet::new();
    let command_of = |service: &str| -> Vec<String> {
        let command =
            &services.get(service).unwrap_or_else(|| panic!("no service {service}"))["command"];
        serde_json::from_value(command.clone()).unwrap()
    };
    assert_eq!(command_of("herald-ingest"), ["ingest"]);
    expected_targets.insert(format!("herald-ingest:{ops_port}"));
    // The API is published; its metrics are not.
    let published = services["herald-ingest"]["ports"].to_string();
    assert!(published.contains(&format!("\"{ingest_port}:{ingest_port}\"")), "{published}");
    assert!(!published.contains(&ops_port.to_string()), "ops port published: {published}");
    assert_eq!(command_of("herald-enricher"), ["enrich"]);
    expected_targets.insert(format!("herald-enricher:{ops_port}"));
    for channel in Channel::ALL {
        let service = format!("herald-dispatch-{channel}");
        assert_eq!(command_of(&service), ["dispatch", "--channel", channel.as_str()]);
        expected_targets.insert(format!("{service}:{ops_port}"));
    }
    assert_eq!(command_of("herald-topics"), ["topics", "apply"]);
    assert_eq!(command_of("herald-migrate"), ["migrate"]);
    let tested = kafka_version_tested();
    for broker in ["kafka-1", "kafka-2", "kafka-3"] {
        let env = &services[broker]["environment"];
        assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller", "{broker}: KRaft");
        assert_eq!(env["KAFKA_MIN_INSYNC_REPLICAS"], 2);
        let image = services[broker]["image"].as_str().unwrap();
        assert_eq!(
            image,
            format!("apache/kafka:{tested}"),
            "{broker} runs the Kafka the suite runs on"
        );
    }
    for needed in ["schema-registry", "scylla", "prometheus", "grafana"] {
        assert!(services.contains_key(needed), "no {needed}");
    }

    let drain_ms = config.kafka.consumer.drain_deadline_ms;
    for (name, service) in services.iter().filter(|(n, _)| n.starts_with("herald-")) {
        let grace = service["stop_grace_period"].as_str().unwrap();
        let grace = humantime::parse_duration(grace).unwrap();
        assert!(grace.as_millis() > u128::from(drain_ms), "{name}: {grace:?} ≤ drain deadline");
        let mounts: Vec<String> = serde_json::from_value(service["volumes"].clone()).unwrap();
        assert!(mounts.iter().any(|m| m.starts_with("./compose/herald.toml:")), "{name}");
    }

    let prometheus = yaml_documents(&infra("prometheus/prometheus.yml")).remove(0);
    let mut scraped = BTreeSet::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        assert!(job["job_name"].as_str().unwrap().starts_with("herald-"), "alerts match herald-.*");
        for static_config in job["static_configs"].as_array().unwrap() {
            for target in static_config["targets"].as_array().unwrap() {
                scraped.insert(target.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(scraped, expected_targets);
    let rule_files: Vec<String> = serde_json::from_value(prometheus["rule_files"].clone()).unwrap();
    let mounted = services["prometheus"]["volumes"].to_string();
    for file in rule_files {
        assert!(mounted.contains(&format!("./prometheus/alerts.yml:{file}")), "{file} not mounted");
    }
}

#[test]
fn the_operating_guide_documents_every_metric_herald_exports() {
    let guide = std::fs::read_to_string(infra("../docs/operating.md")).unwrap();
    let missing: Vec<String> =
        catalog().into_keys().filter(|name| !guide.contains(&format!("| `{name}` |"))).collect();
    assert!(missing.is_empty(), "docs/operating.md's metrics table lacks {missing:?}");
}

/// Every page under docs/ is linked from the README, and every link between them resolves.
#[test]
fn every_doc_page_is_linked_from_the_readme_and_every_link_resolves() {
    let root = infra("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(readme.contains(&format!("(docs/{name})")), "README links docs/{name}");
            pages.push(path);
        }
    }
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") {
                continue;
            }
            let file = link.split('#').next().unwrap();
            if file.is_empty() {
                continue;
            }
            let target = page.parent().unwrap().join(file);
            assert!(target.exists(), "{} links {link}, which does not exist", page.display());
        }
    }
}

/// Every test file the docs name exists, and every test named after it is in that file: the
/// guarantees table says which test proves each guarantee, and must follow a test that moves.
#[test]
fn every_test_the_docs_name_exists_where_they_say() {
    let root = infra("..");
    let mut named = 0;
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let page = entry.unwrap().path();
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&page).unwrap();
        for line in text.lines() {
            let mut file: Option<(String, String)> = None;
            for token in line.split('`').skip(1).step_by(2) {
                if token.ends_with(".rs") && token.contains("/tests/") && !token.contains('{') {
                    let source = std::fs::read_to_string(root.join(token));
                    let source = source.unwrap_or_else(|_| {
                        panic!("{} names {token}, which does not exist", page.display())
                    });
                    file = Some((token.to_owned(), source));
                } else if let Some((path, source)) = &file {
                    let is_test_name = token.matches('_').count() >= 3
                        && token
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit());
                    if is_test_name {
                        named += 1;
                        assert!(
                            source.contains(&format!("fn {token}(")),
                            "{} names {token} in {path}, which has no such test",
                            page.display()
                        );
                    }
                }
            }
        }
    }
    assert!(named >= 20, "only {named} tests named: is the guarantees table still there?");
}
