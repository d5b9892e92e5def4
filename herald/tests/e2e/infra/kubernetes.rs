//! The Kubernetes manifests as `kustomize build infra/k8s` renders them (what `kubectl apply
//! -k` sends): each role's scaling, draining, probes and ports, the namespace, the files each
//! pod mounts, and the set-up Jobs the roles wait for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::Parser as _;
use herald_schemas::{Channel, Lane};
use herald_wiring::config::HeraldConfig;
use serde_json::Value;

use super::{infra, port_of, yaml_documents, yaml_text};

/// A consumer role's Deployment name, its arguments, and its (group, topic) per lane.
type Role = (String, Vec<String>, Vec<GroupTopic>);
type GroupTopic = (String, String);

/// `kustomize build infra/k8s`, run by the `kustomize` that `infra/install-kustomize.sh`
/// installs (or `HERALD_KUSTOMIZE`, or one on the PATH).
fn kustomize_build() -> String {
    let installed = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/herald/bin/kustomize"))
        .filter(|path| path.exists());
    let program = std::env::var_os("HERALD_KUSTOMIZE")
        .map(std::path::PathBuf::from)
        .or(installed)
        .unwrap_or_else(|| "kustomize".into());
    let output = std::process::Command::new(&program)
        .arg("build")
        .arg(infra("k8s"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{}: {e} (install it with infra/install-kustomize.sh)", program.display())
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kustomize build infra/k8s failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Every object `kustomize build infra/k8s` renders, by kind and name.
fn kubernetes_objects() -> BTreeMap<(String, String), Value> {
    let mut objects = BTreeMap::new();
    for object in yaml_text(&kustomize_build(), "kustomize build infra/k8s") {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(
            objects.insert((kind.clone(), name.clone()), object).is_none(),
            "{kind} {name} twice"
        );
    }
    objects
}

#[test]
fn kubernetes_scales_each_consumer_group_up_to_its_partitions_and_drains_before_kill() {
    let config = HeraldConfig::load(Some(&infra("k8s/herald.toml"))).unwrap();
    let objects = kubernetes_objects();
    let partitions: BTreeMap<String, i32> =
        config.topic_specs().into_iter().map(|t| (t.name, t.partitions)).collect();
    let ops_port = i64::from(port_of(config.ops.listen.expect("probes need the ops endpoint")));
    let drain_ms = config.kafka.consumer.drain_deadline_ms;
    let topics = config.kafka.topics();

    let mut roles: Vec<Role> = vec![(
        "herald-enricher".into(),
        vec!["enrich".into()],
        [Lane::Urgent, Lane::Bulk]
            .into_iter()
            .map(|lane| (herald_enricher::group(&config.kafka, lane), topics.requests_in(lane)))
            .collect(),
    )];
    for channel in Channel::ALL {
        roles.push((
            format!("herald-dispatch-{channel}"),
            vec!["dispatch".into(), "--channel".into(), channel.as_str().into()],
            [Lane::Urgent, Lane::Bulk]
                .into_iter()
                .map(|lane| {
                    (
                        herald_dispatchers::lane_group(&config.kafka, channel, lane),
                        topics.channel_in(channel, lane),
                    )
                })
                .collect(),
        ));
    }
    for (name, args, groups) in roles {
        let key = |kind: &str| (kind.to_owned(), name.clone());
        let deployment = &objects.get(&key("Deployment")).unwrap_or_else(|| panic!("{name}"));
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["args"], serde_json::json!(args), "{name}");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace * 1000 > drain_ms, "{name}: grace {grace} s ≤ drain deadline {drain_ms} ms");
        assert_eq!(container["ports"][0]["containerPort"], ops_port, "{name}");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];

        let budget = &objects.get(&key("PodDisruptionBudget")).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels, "{name}: PDB selects it");

        let scaled = &objects.get(&key("ScaledObject")).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], name.as_str());
        let max = scaled["spec"]["maxReplicaCount"].as_i64().unwrap();
        let mut triggered = Vec::new();
        for trigger in scaled["spec"]["triggers"].as_array().unwrap() {
            let meta = &trigger["metadata"];
            let topic = meta["topic"].as_str().unwrap().to_owned();
            let group = meta["consumerGroup"].as_str().unwrap().to_owned();
            assert_eq!(meta["bootstrapServers"], config.kafka.bootstrap_servers.as_str());
            let count = partitions.get(&topic).unwrap_or_else(|| panic!("{name}: topic {topic}"));
            assert_eq!(
                max,
                i64::from(*count),
                "{name}: at most one member per partition of {topic}"
            );
            triggered.push((group, topic));
        }
        assert_eq!(triggered, groups, "{name}: each lane's group on its topic");
    }
    // Several processes per channel share one delivery ledger, and several enrichers one
    // directory (frequency caps): per-pod SQLite files would not be shared.
    assert_eq!(config.dispatch.ledger.backend, herald_dispatchers::config::LedgerBackend::Scylla);
    assert_eq!(config.enricher.directory_backend, herald_enricher::DirectoryBackend::Scylla);

    // Several ingest replicas share API clients, idempotency keys and statuses: a retry on
    // another replica must replay the first answer, not produce the notification again.
    assert_eq!(config.ingest.store_backend, herald_ingest::StoreBackend::Scylla);
    let ingest = &objects[&("Deployment".to_owned(), "herald-ingest".to_owned())];
    assert!(ingest["spec"]["replicas"].as_i64().unwrap() >= 2, "ingest runs several replicas");
    let container = &ingest["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], i64::from(port_of(config.ingest.listen)));
    for job in ["herald-topics-apply", "herald-migrate"] {
        assert!(objects.contains_key(&("Job".to_owned(), job.to_owned())), "{job}");
    }
}

/// `kubectl apply -k infra/k8s` on a fresh cluster: the namespace the kustomization puts
/// everything in is one of its objects, and every pod that reads `herald.toml` mounts the
/// directory of each file it names (a store's CA, a provider's key), so no role fails at
/// start-up on a file it cannot see.
#[test]
fn kubernetes_objects_live_in_their_own_namespace_and_mount_every_file_the_configuration_names() {
    let kustomization = yaml_documents(&infra("k8s/kustomization.yaml")).remove(0);
    let namespace = kustomization["namespace"].as_str().unwrap();
    let objects = kubernetes_objects();
    assert!(
        objects.contains_key(&("Namespace".into(), namespace.into())),
        "no Namespace {namespace}"
    );
    for ((kind, name), object) in &objects {
        if kind != "Namespace" {
            assert_eq!(object["metadata"]["namespace"], namespace, "{kind} {name}");
        }
    }
    let config = std::fs::read_to_string(infra("k8s/herald.toml")).unwrap();
    let named_dirs: BTreeSet<String> = config
        .split('"')
        .filter(|s| s.starts_with("/run/") || s.starts_with("/etc/"))
        .filter_map(|path| Path::new(path).parent().map(|d| d.to_string_lossy().into_owned()))
        .collect();
    assert!(named_dirs.contains("/run/secrets"), "{named_dirs:?}");
    let mut pods = 0;
    for ((kind, name), object) in &objects {
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        let pod = &object["spec"]["template"]["spec"];
        let init = pod["initContainers"].as_array().into_iter().flatten();
        for container in pod["containers"].as_array().unwrap().iter().chain(init) {
            let reads_config = container["env"]
                .as_array()
                .is_some_and(|env| env.iter().any(|e| e["name"] == "HERALD_CONFIG"));
            if !reads_config {
                continue;
            }
            pods += 1;
            let mounts: BTreeSet<&str> = container["volumeMounts"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["mountPath"].as_str()).collect())
                .unwrap_or_default();
            for dir in &named_dirs {
                assert!(
                    mounts.contains(dir.as_str()),
                    "{kind} {name} does not mount {dir}: {mounts:?}"
                );
            }
        }
    }
    assert!(
        pods >= 15,
        "the send API, the enricher, four dispatchers, their waits and three set-up Jobs: {pods}"
    );
}

/// The command line a container runs, its shell's included.
fn command_line(container: &Value) -> String {
    let words = |key: &str| -> Vec<String> {
        container[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    [words("command"), words("args")].concat().join(" ")
}

/// `kubectl apply -k` creates the set-up Jobs and the roles together: every role's pod
/// waits, in an init container, until what the Jobs do is done (topics as defined, the
/// stores' tables there), with the checks `herald` really has; and every role serves its
/// probes and metrics on the ops port, which the send API's Service does not expose.
#[test]
fn every_role_waits_for_the_setup_jobs_and_serves_probes_and_metrics_on_the_ops_port() {
    let config = HeraldConfig::load(Some(&infra("k8s/herald.toml"))).unwrap();
    let ops_port = i64::from(port_of(config.ops.listen.expect("every role's ops endpoint")));
    let objects = kubernetes_objects();
    let jobs: BTreeSet<String> = objects
        .iter()
        .filter(|((kind, _), _)| kind == "Job")
        .map(|(_, job)| command_line(&job["spec"]["template"]["spec"]["containers"][0]))
        .collect();
    let expected = ["topics apply", "migrate", "schemas register"].map(str::to_owned);
    assert_eq!(jobs, BTreeSet::from(expected));
    for ((_, job), object) in objects.iter().filter(|((kind, _), _)| kind == "Job") {
        let ttl = object["spec"]["ttlSecondsAfterFinished"].as_u64();
        assert!(ttl.is_some(), "{job}: a finished Job goes, so the next release can run it");
    }
    let checks = [
        "herald topics apply --check",
        "herald migrate --check",
        "herald schemas register --check",
    ];
    for check in checks {
        let words: Vec<&str> = check.split_whitespace().collect();
        herald::cli::Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{check}: {e}"));
    }

    let mut deployments = 0;
    for ((_, name), deployment) in objects.iter().filter(|((kind, _), _)| kind == "Deployment") {
        deployments += 1;
        let template = &deployment["spec"]["template"];
        let pod = &template["spec"];
        let waits = pod["initContainers"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(
            waits.iter().any(|c| {
                let line = command_line(c);
                line.contains("until ") && checks.iter().all(|check| line.contains(check))
            }),
            "{name} starts before the set-up: {waits:?}"
        );
        let container = &pod["containers"][0];
        assert!(
            waits.iter().all(|c| c["image"] == container["image"]),
            "{name}: the wait runs this release's herald"
        );
        let ports = container["ports"].as_array().unwrap();
        let ops = ports.iter().find(|p| p["name"] == "ops");
        assert_eq!(ops.map(|p| &p["containerPort"]), Some(&Value::from(ops_port)), "{name}");
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            assert!(port.is_null() || port == "ops", "{name}: {probe} on {port}");
        }
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "ops", "{name}");
        let scraped = &template["metadata"]["annotations"]["prometheus.io/port"];
        assert_eq!(scraped, &Value::from(ops_port.to_string()), "{name}: Prometheus scrapes ops");
    }
    assert_eq!(deployments, 6, "the send API, the enricher and four dispatchers");

    let ingest = &objects[&("Deployment".to_owned(), "herald-ingest".to_owned())];
    let container = &ingest["spec"]["template"]["spec"]["containers"][0];
    let http = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == "http");
    let api_port = i64::from(config.ingest.listen.port());
    assert_eq!(http.map(|p| &p["containerPort"]), Some(&Value::from(api_port)));
    let service = &objects[&("Service".to_owned(), "herald-ingest".to_owned())];
    let exposed: Vec<&Value> =
        service["spec"]["ports"].as_array().unwrap().iter().map(|p| &p["targetPort"]).collect();
    assert_eq!(exposed, [&Value::from("http")], "the Service exposes the API alone");
}

/// KEDA reads the lag from the cluster herald.toml connects to, as Herald does: SASL over
/// TLS, trusting the CA herald.toml names.
#[test]
fn keda_reads_the_lag_with_the_login_and_the_ca_the_roles_use() {
    let config = HeraldConfig::load(Some(&infra("k8s/herald.toml"))).unwrap();
    let properties = &config.kafka.properties;
    let objects = kubernetes_objects();
    let auth = &objects[&("TriggerAuthentication".to_owned(), "herald-kafka".to_owned())];
    let parameters: BTreeSet<&str> = auth["spec"]["secretTargetRef"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["parameter"].as_str())
        .collect();
    if properties.get("security.protocol").is_some_and(|p| p.starts_with("SASL")) {
        for needed in ["sasl", "username", "password"] {
            assert!(parameters.contains(needed), "no {needed}: {parameters:?}");
        }
    }
    if properties.get("security.protocol").is_some_and(|p| p.ends_with("SSL")) {
        assert!(parameters.contains("tls"), "{parameters:?}");
    }
    if properties.contains_key("ssl.ca.location") {
        assert!(parameters.contains("ca"), "herald.toml trusts a CA KEDA does not: {parameters:?}");
    }
    for ((kind, name), object) in &objects {
        if kind == "ScaledObject" {
            for trigger in object["spec"]["triggers"].as_array().unwrap() {
                assert_eq!(trigger["authenticationRef"]["name"], "herald-kafka", "{name}");
            }
        }
    }
}

/// The Secrets a container reads its environment from.
fn env_secrets(container: &Value) -> Vec<String> {
    container["envFrom"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|from| from["secretRef"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Least privilege: herald.toml takes the Kafka user from the environment, and every
/// container that talks to Kafka gets the user of what it runs (each holding only what
/// `herald acls` lists for it): a role's own, the operator's for the topics Job, a
/// describe-only one for the pods' wait; the containers that need no Kafka get none.
#[test]
fn every_container_logs_in_to_kafka_as_the_user_of_what_it_runs() {
    let config = HeraldConfig::load(Some(&infra("k8s/herald.toml"))).unwrap();
    let username = config.kafka.secret_properties.get("sasl.username").map(|s| format!("{s:?}"));
    let username = username.expect("herald.toml takes the Kafka user from a secret source");
    assert!(username.contains("HERALD_KAFKA_USERNAME"), "{username}");
    assert!(!config.kafka.properties.contains_key("sasl.username"), "one user for every role");
    let kafka_user = |container: &Value| -> Vec<String> {
        env_secrets(container).into_iter().filter(|s| s.starts_with("herald-kafka-")).collect()
    };
    let objects = kubernetes_objects();
    let mut seen = BTreeSet::new();
    for ((kind, name), object) in &objects {
        let pod = &object["spec"]["template"]["spec"];
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        for container in pod["containers"].as_array().unwrap() {
            let line = command_line(container);
            let expected: &[&str] = match line.split_whitespace().next() {
                Some("ingest") => &["herald-kafka-ingest"],
                Some("enrich") => &["herald-kafka-enricher"],
                Some("dispatch") => &["herald-kafka-dispatch"],
                _ if line == "topics apply" => &["herald-kafka-operator"],
                _ => &[],
            };
            assert_eq!(kafka_user(container), expected, "{kind} {name}: {line}");
            seen.extend(expected.iter().map(|s| s.to_string()));
        }
        for wait in pod["initContainers"].as_array().map(Vec::as_slice).unwrap_or_default() {
            assert_eq!(kafka_user(wait), ["herald-kafka-setup-check"], "{name}'s wait");
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}
