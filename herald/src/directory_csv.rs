//! CSV for `herald directory import`: a header row naming the fields of the JSON lines
//! format, then one record per row. Its kind comes from a `kind` column or, for a file of one
//! kind (a warehouse export of users, say), from `--kind`. An empty cell is an absent field.

use std::io::Read;

use serde_json::{Map, Value};

/// Fields that are booleans in the JSON lines format.
const BOOLEAN_FIELDS: [&str; 2] = ["opted_in", "active"];

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read the CSV file: {0}")]
    Read(#[from] csv::Error),
    #[error(
        "the CSV file has no `kind` column: name what its rows are with --kind (user, device, preference or template)"
    )]
    NoKind,
}

/// One row: the line it starts on, how far into the file it ends, and its fields as the JSON
/// lines format would have them (or why they cannot be).
#[derive(Debug)]
pub struct CsvRecord {
    pub line: usize,
    pub end_byte: u64,
    pub fields: Result<Value, String>,
}

#[derive(Debug)]
pub struct CsvRecords<R> {
    reader: csv::Reader<R>,
    headers: csv::StringRecord,
    kind: Option<&'static str>,
}

impl<R: Read> CsvRecords<R> {
    /// Reads the header row. `kind` is what a row is when it has no `kind` cell.
    pub fn new(input: R, kind: Option<&'static str>) -> Result<Self, CsvError> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::Headers).from_reader(input);
        let headers = reader.headers()?.clone();
        if kind.is_none() && !headers.iter().any(|h| h == "kind") {
            return Err(CsvError::NoKind);
        }
        Ok(Self { reader, headers, kind })
    }

    /// The next row, `None` at the end. A row that cannot be read as CSV (a wrong number of
    /// cells, bytes that are not UTF-8) is a record whose fields are the reason; only an I/O
    /// error ends the reading.
    pub fn next_record(&mut self) -> Result<Option<CsvRecord>, CsvError> {
        let mut row = csv::StringRecord::new();
        let (line, fields) = match self.reader.read_record(&mut row) {
            Ok(false) => return Ok(None),
            Ok(true) => (line_of(row.position()), self.fields(&row)),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e.into()),
            Err(e) => (line_of(e.position()), Err(row_error(&e, self.headers.len()))),
        };
        Ok(Some(CsvRecord { line, end_byte: self.reader.position().byte(), fields }))
    }

    fn fields(&self, row: &csv::StringRecord) -> Result<Value, String> {
        let mut fields = Map::new();
        for (name, cell) in self.headers.iter().zip(row.iter()) {
            if cell.is_empty() {
                continue;
            }
            let value = if BOOLEAN_FIELDS.contains(&name) {
                Value::Bool(boolean(name, cell)?)
            } else {
                Value::String(cell.to_owned())
            };
            fields.insert(name.to_owned(), value);
        }
        if !fields.contains_key("kind") {
            let kind = self.kind.ok_or("the row's kind cell is empty and no --kind was given")?;
            fields.insert("kind".into(), Value::String(kind.into()));
        }
        Ok(Value::Object(fields))
    }
}

fn line_of(position: Option<&csv::Position>) -> usize {
    position.map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX))
}

fn row_error(error: &csv::Error, header_cells: usize) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { len, .. } => {
            format!("the row has {len} cell(s) where the header has {header_cells}")
        }
        csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".into(),
        _ => error.to_string(),
    }
}

fn boolean(name: &str, cell: &str) -> Result<bool, String> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{name}: expected true or false, not {cell:?}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(csv: &str, kind: Option<&'static str>) -> Vec<(usize, Result<Value, String>)> {
        let mut records = CsvRecords::new(csv.as_bytes(), kind).unwrap();
        let mut out = Vec::new();
        while let Some(record) = records.next_record().unwrap() {
            out.push((record.line, record.fields));
        }
        out
    }

    #[test]
    fn quoted_cells_keep_commas_quotes_and_line_breaks_and_empty_cells_are_absent() {
        let csv = "kind, template_id ,locale,channel,subject,body\n\
                   template,welcome,,email,\"Hi, {{ name }}\",\"Line one\nSaid \"\"hello\"\"\"\n";
        let rows = all(csv, None);
        assert_eq!(rows.len(), 1);
        let (line, fields) = &rows[0];
        assert_eq!(*line, 2);
        let fields = fields.as_ref().unwrap();
        assert_eq!(fields["template_id"], "welcome", "header names are trimmed");
        assert_eq!(fields["subject"], "Hi, {{ name }}");
        assert_eq!(fields["body"], "Line one\nSaid \"hello\"");
        assert!(fields.get("locale").is_none(), "an empty cell is an absent field");
    }

    #[test]
    fn the_kind_comes_from_its_column_or_from_the_option_and_booleans_are_parsed() {
        let csv = "user_id,category,channel,opted_in\n1,marketing,sms,No\n2,marketing,sms,maybe\n";
        let rows = all(csv, Some("preference"));
        let first = rows[0].1.as_ref().unwrap();
        assert_eq!(first["kind"], "preference");
        assert_eq!(first["opted_in"], false);
        assert_eq!(rows[1].0, 3);
        assert_eq!(
            rows[1].1.as_ref().unwrap_err(),
            "opted_in: expected true or false, not \"maybe\""
        );

        let err = CsvRecords::new("user_id,email\n".as_bytes(), None).err().unwrap();
        assert!(matches!(err, CsvError::NoKind), "{err}");
        let mixed = "kind,user_id\nuser,1\n,2\n";
        let rows = all(mixed, None);
        assert_eq!(rows[0].1.as_ref().unwrap()["kind"], "user");
        assert!(rows[1].1.as_ref().unwrap_err().contains("no --kind"));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_cells_is_refused_and_the_next_one_read() {
        let csv = "kind,user_id,email\nuser,1\nuser,2,b@example.com\n";
        let rows = all(csv, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.as_ref().unwrap_err(), "the row has 2 cell(s) where the header has 3");
        assert_eq!(rows[1].0, 3);
        assert_eq!(rows[1].1.as_ref().unwrap()["email"], "b@example.com");
    }
}
