//! `herald directory import`: JSON lines or CSV into the enricher's directory, checked record
//! by record, idempotent on re-run, through the directory's topics (applied by the running
//! enricher) or `--direct` into the store, and used by the pipeline right away; the template
//! ids it announces let the send API refuse an unknown `template_id` with a 422.

use std::time::Duration;

use herald_enricher::Directory as _;

use crate::support::{TestEnv, herald_command};

const WAIT: Duration = Duration::from_secs(30);

const FILE: &str = r#"{"kind":"user","user_id":"imp-1","email":"imported@example.com","phone":"+821012345678","locale":"ko-KR","region":"KR"}
{"kind":"device","user_id":"imp-1","device_id":"phone","platform":"android","token":"fcm-imported-token","app_id":"com.example.app"}
{"kind":"preference","user_id":"imp-1","category":"marketing","channel":"sms","opted_in":false}
{"kind":"user","user_id":"imp-2","phone":"12345"}

{"kind":"template","template_id":"welcome","locale":"","channel":"email","subject":"Welcome {{ name }}","body":"Hello {{ name }}"}
{"kind":"template","template_id":"welcome","locale":"ko","channel":"email","subject":"환영합니다 {{ name }}","body":"안녕하세요 {{ name }}"}
{"kind":"template","template_id":"broken","locale":"","channel":"sms","body":"{{ name"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_lines_are_checked_idempotent_applied_by_the_running_enricher_and_used_at_once() {
    let env = TestEnv::start().await;
    // The enricher applies what the import writes to the directory's topics.
    let pipeline = env.pipeline().await;
    let file = env.dir.path().join("directory.jsonl");
    std::fs::write(&file, FILE).unwrap();
    let import = || {
        herald_command(&env)
            .args(["directory", "import", "--file", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = import();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(!first.status.success(), "bad lines make the exit non-zero");
    assert!(
        stdout
            .contains("1 user(s), 1 device(s), 1 preference(s), 2 template variant(s)), refused 2"),
        "{stdout}"
    );
    assert!(stderr.contains("line 4: phone \"12345\": not an E.164 phone number"), "{stderr}");
    assert!(stderr.contains("line 8: ") && stderr.contains("syntax"), "{stderr}");

    let again = import();
    let summary = |out: &str| out.lines().next().unwrap_or_default().to_owned();
    let again = String::from_utf8_lossy(&again.stdout);
    assert_eq!(summary(&again), summary(&stdout), "a re-run does the same");
    let directory = env.directory().await;
    assert_eq!(directory.devices("imp-1").await.unwrap().len(), 1, "upserted, not duplicated");
    assert_eq!(directory.template("welcome").await.unwrap().len(), 2);
    assert_eq!(directory.user("imp-2").await.unwrap(), None);

    let body = serde_json::json!({
        "to": [{"user_id": "imp-1"}], "template_id": "welcome", "data": {"name": "Ji"},
    });
    let (status, answer) = pipeline.post(Some(&env.api_key().await), &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    // The import announced its template ids: the send API refuses others at once.
    let unknown = serde_json::json!({"to": [{"user_id": "imp-1"}], "template_id": "welcom"});
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, answer) =
            pipeline.post(Some(&env.api_key().await), &unknown.to_string()).await;
        if status == 422 {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {status} {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["errors"][0]["field"], "template_id", "{refused}");
    assert!(refused["errors"][0]["reason"].as_str().unwrap().contains("\"welcom\""), "{refused}");
    // ...and with the variables every variant of a template uses: one missing is a 422 too.
    let without = serde_json::json!({"to": [{"user_id": "imp-1"}], "template_id": "welcome"});
    let (status, refused) = pipeline.post(Some(&env.api_key().await), &without.to_string()).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "data", "{refused}");
    let reason = refused["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("\"welcome\" needs variable(s) name"), "{refused}");
    let mail = env.mail.wait_for(WAIT, |m| m.to == ["imported@example.com"]).await.expect("mail");
    assert!(mail.header("Subject").unwrap().starts_with("=?utf-8?"), "the ko subject");
    pipeline.stop().await;
}

const USERS_CSV: &str = "user_id,email,phone,locale,timezone,region,quiet_hours
csv-1,csv1@example.com,+14155550100,en-US,America/New_York,US,
csv-2,,12345,,,,
csv-3,csv3@example.com,,ko-KR,Asia/Seoul,KR,22:00-07:00
";

const MIXED_CSV: &str = "kind,user_id,device_id,platform,token,active,category,channel,opted_in,template_id,locale,subject,body
device,csv-1,tablet,android,fcm-csv-token,true,,,,,,,
device,csv-1,old,android,fcm-old-token,no,,,,,,,
preference,csv-1,,,,,marketing,email,false,,,,
template,,,,,,,email,,csv-welcome,,\"Hi, {{ name }}\",\"Dear {{ name }},
welcome aboard.\"
preference,csv-3,,,,,marketing,email,perhaps,,,,
";

/// `--direct` writes the store with no enricher running: a first bulk load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_import_like_json_lines_with_the_kind_from_a_column_or_the_command() {
    let env = TestEnv::start().await;
    let users = env.dir.path().join("users.csv");
    let mixed = env.dir.path().join("mixed.csv");
    std::fs::write(&users, USERS_CSV).unwrap();
    std::fs::write(&mixed, MIXED_CSV).unwrap();
    let import = |file: &std::path::Path, extra: &[&str]| {
        let output = herald_command(&env)
            .args(["directory", "import", "--direct", "--file", file.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };

    let (ok, _, stderr) = import(&users, &[]);
    assert!(!ok && stderr.contains("no `kind` column") && stderr.contains("--kind"), "{stderr}");
    let (ok, stdout, stderr) = import(&users, &["--kind", "user"]);
    assert!(!ok, "a bad row makes the exit non-zero");
    assert!(stdout.contains("read 3 record(s)"), "{stdout}");
    assert!(stdout.contains("imported 2 (2 user(s), 0 device(s)") && stdout.contains("refused 1"));
    assert!(stderr.contains("line 3: phone \"12345\": not an E.164 phone number"), "{stderr}");

    let (_, first, stderr) = import(&mixed, &[]);
    assert!(
        first.contains("2 device(s), 1 preference(s), 1 template variant(s)), refused 1"),
        "{first}"
    );
    assert!(stderr.contains("line 7: opted_in: expected true or false"), "{stderr}");
    let (_, again, _) = import(&mixed, &[]);
    assert_eq!(again.lines().next(), first.lines().next(), "a re-run does the same");

    let directory = env.directory().await;
    let user = directory.user("csv-1").await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("csv1@example.com"));
    assert_eq!(user.quiet_hours, None, "an empty cell is an absent field");
    let seoul = directory.user("csv-3").await.unwrap().unwrap();
    assert_eq!(seoul.quiet_hours.as_deref(), Some("22:00-07:00"));
    assert_eq!(directory.user("csv-2").await.unwrap(), None);
    let devices = directory.devices("csv-1").await.unwrap();
    assert_eq!(devices.len(), 2, "upserted, not duplicated");
    let old = devices.iter().find(|d| d.device_id == "old").unwrap();
    assert!(!old.active, "\"no\" is false");
    let preferences = directory.preferences("csv-1").await.unwrap();
    assert_eq!(preferences.len(), 1);
    assert!(!preferences[0].opted_in);
    let template = directory.template("csv-welcome").await.unwrap();
    assert_eq!(template[0].subject.as_deref(), Some("Hi, {{ name }}"));
    assert_eq!(template[0].body, "Dear {{ name }},\nwelcome aboard.");

    let jsonl = env.dir.path().join("users.jsonl");
    std::fs::write(&jsonl, "").unwrap();
    let (ok, _, stderr) = import(&jsonl, &["--kind", "user"]);
    assert!(!ok && stderr.contains("--kind is for CSV files"), "{stderr}");
}
