//! Any file given to `herald directory import`, read as JSON lines and as CSV: every record
//! checked or refused with a reason, never a panic; a CSV row (even one opening a quote it
//! never closes) costs only itself, so rows come out in the file's order and never more of
//! them than the file has lines.
#![no_main]

use herald_enricher::import::csv::CsvRecords;
use herald_enricher::import::{from_fields, parse_json_line};
use herald_enricher::templates::Renderer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn renderer() -> &'static Renderer {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    RENDERER.get_or_init(Renderer::default)
}

fuzz_target!(|data: &[u8]| {
    let renderer = renderer();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(line) = std::str::from_utf8(line) {
            if let Err(reason) = parse_json_line(line, renderer) {
                assert!(!reason.is_empty());
            }
        }
    }
    let lines = data.split(|b| *b == b'\n').count();
    for kind in [None, Some("user"), Some("template")] {
        let Ok(mut records) = CsvRecords::new(data, kind) else { continue };
        let (mut last_line, mut rows) = (0, 0);
        while let Ok(Some(record)) = records.next_record() {
            assert!(record.line > last_line, "row at line {} after {last_line}", record.line);
            last_line = record.line;
            rows += 1;
            assert!(rows <= lines, "{rows} rows from {lines} lines");
            match record.fields {
                Ok(fields) => {
                    if let Err(reason) = from_fields(fields, renderer) {
                        assert!(!reason.is_empty());
                    }
                }
                Err(reason) => assert!(!reason.is_empty()),
            }
        }
    }
});
