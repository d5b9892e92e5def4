//! CSV for `herald directory import`: a header row naming the fields of the JSON lines
//! format, then one record per row. Its kind comes from a `kind` column or, for a file of one
//! kind (a warehouse export of users, say), from `--kind`. An empty cell is an absent field.
//!
//! The file is read line by line. A quoted cell may hold line breaks (a template's text), so
//! a line with a quote left open takes the next ones, but only up to [`MAX_ROW_LINES`] lines
//! and [`MAX_ROW_BYTES`]: a quote never closed would otherwise make the rest of the file one
//! cell of one row. Past those, the row is refused as its first line alone and the lines it
//! took are read again as rows: a broken row costs only itself, and memory stays flat.

use std::collections::VecDeque;
use std::io::BufRead;

use serde_json::{Map, Value};

/// Fields that are booleans in the JSON lines format.
const BOOLEAN_FIELDS: [&str; 2] = ["opted_in", "active"];
/// The most lines one row may span.
pub const MAX_ROW_LINES: usize = 200;
/// The most bytes one row may hold.
pub const MAX_ROW_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read the CSV file: {0}")]
    Read(#[from] std::io::Error),
    #[error("the CSV file's header row cannot be read: {0}")]
    Header(String),
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

/// A physical line of the file: its number and bytes (line break included).
type RawLine = (usize, Vec<u8>);

/// A row as read: its first line's number, its cells, and the lines after the first it took.
struct Row {
    line: usize,
    cells: Result<Vec<String>, String>,
    taken: Vec<RawLine>,
}

#[derive(Debug)]
pub struct CsvRecords<R> {
    input: R,
    /// Lines read ahead by a row that was refused, to be read again.
    pending: VecDeque<RawLine>,
    next_line: usize,
    /// Bytes of the file consumed, for the progress bar.
    consumed: u64,
    headers: Vec<String>,
    kind: Option<&'static str>,
}

impl<R: BufRead> CsvRecords<R> {
    /// Reads the header row. `kind` is what a row is when it has no `kind` cell.
    pub fn new(input: R, kind: Option<&'static str>) -> Result<Self, CsvError> {
        let mut records = Self {
            input,
            pending: VecDeque::new(),
            next_line: 1,
            consumed: 0,
            headers: Vec::new(),
            kind,
        };
        let headers = match records.next_row()?.map(|row| row.cells) {
            Some(Ok(cells)) => cells,
            Some(Err(reason)) => return Err(CsvError::Header(reason)),
            None => Vec::new(),
        };
        records.headers = headers.iter().map(|h| h.trim().to_owned()).collect();
        if kind.is_none() && !records.headers.iter().any(|h| h == "kind") {
            return Err(CsvError::NoKind);
        }
        Ok(records)
    }

    /// The next row, `None` at the end. A row that cannot be read as CSV (a wrong number of
    /// cells, bytes that are not UTF-8, a quote left open) is a record whose fields are the
    /// reason; only an I/O error ends the reading. A row over several lines is taken only if
    /// it reads as a template (whose texts may hold line breaks); any other is refused as its
    /// first line alone, and the lines it took are read again as rows.
    pub fn next_record(&mut self) -> Result<Option<CsvRecord>, CsvError> {
        loop {
            let Some(row) = self.next_row()? else { return Ok(None) };
            let fields = row.cells.and_then(|cells| self.fields(&cells));
            // A blank line is no row.
            if matches!(&fields, Err(reason) if reason == BLANK) {
                continue;
            }
            let a_template = fields.as_ref().is_ok_and(|f| f["kind"] == "template");
            if !row.taken.is_empty() && !a_template {
                let spanned = row.taken.len() + 1;
                self.give_back(row.taken);
                let reason = format!(
                    "a quoted cell runs from line {} over {spanned} lines (a quote never closed?); this row is skipped and reading goes on at line {}",
                    row.line,
                    row.line + 1
                );
                return Ok(Some(CsvRecord {
                    line: row.line,
                    end_byte: self.consumed,
                    fields: Err(reason),
                }));
            }
            return Ok(Some(CsvRecord { line: row.line, end_byte: self.consumed, fields }));
        }
    }

    /// Lines a refused row took, to be read again as rows of their own.
    fn give_back(&mut self, taken: Vec<RawLine>) {
        for line in taken.into_iter().rev() {
            self.pending.push_front(line);
        }
    }

    fn read_line(&mut self) -> Result<Option<RawLine>, CsvError> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        let mut bytes = Vec::new();
        if self.input.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(None);
        }
        self.consumed += bytes.len() as u64;
        let number = self.next_line;
        self.next_line += 1;
        Ok(Some((number, bytes)))
    }

    /// The next row: its first line's number, its cells, and the lines after the first it took.
    fn next_row(&mut self) -> Result<Option<Row>, CsvError> {
        let Some((line, bytes)) = self.read_line()? else { return Ok(None) };
        let mut text = bytes;
        let mut taken: Vec<RawLine> = Vec::new();
        while open_quote(&text) {
            let too_long = taken.len() + 1 >= MAX_ROW_LINES || text.len() >= MAX_ROW_BYTES;
            let next = if too_long { None } else { self.read_line()? };
            let Some((number, more)) = next else {
                let reason = format!(
                    "a quote opened on line {line} is not closed within {} line(s); this row is skipped and reading goes on at line {}",
                    taken.len() + 1,
                    line + 1
                );
                self.give_back(taken);
                return Ok(Some(Row { line, cells: Err(reason), taken: Vec::new() }));
            };
            text.extend_from_slice(&more);
            taken.push((number, more));
        }
        Ok(Some(Row { line, cells: cells(&text), taken }))
    }

    fn fields(&self, cells: &[String]) -> Result<Value, String> {
        if cells.len() == 1 && cells[0].trim().is_empty() {
            return Err(BLANK.into());
        }
        if cells.len() != self.headers.len() {
            return Err(format!(
                "the row has {} cell(s) where the header has {}",
                cells.len(),
                self.headers.len()
            ));
        }
        let mut fields = Map::new();
        for (name, cell) in self.headers.iter().zip(cells) {
            if cell.is_empty() {
                continue;
            }
            let value = if BOOLEAN_FIELDS.contains(&name.as_str()) {
                Value::Bool(boolean(name, cell)?)
            } else {
                Value::String(cell.clone())
            };
            fields.insert(name.clone(), value);
        }
        if !fields.contains_key("kind") {
            let kind = self.kind.ok_or("the row's kind cell is empty and no --kind was given")?;
            fields.insert("kind".into(), Value::String(kind.into()));
        }
        Ok(Value::Object(fields))
    }
}

const BLANK: &str = "a blank line";

/// Whether `row` ends inside a quoted cell: an odd number of quotes (an escaped quote is two).
fn open_quote(row: &[u8]) -> bool {
    row.iter().filter(|&&b| b == b'"').count() % 2 == 1
}

/// The cells of one row (its line breaks inside quoted cells kept).
fn cells(row: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(row).map_err(|_| "the row is not UTF-8".to_owned())?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Ok(vec![String::new()]),
        Err(e) => Err(e.to_string()),
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
    fn a_quote_never_closed_costs_its_row_only_and_reading_goes_on_at_the_next_line() {
        let csv = "user_id,email,phone\n\
                   1,a@example.com,+14155550101\n\
                   \"2,b@example.com,+14155550102\n\
                   3,c@example.com,+14155550103\n\
                   4,d@example.com,\"+14155550104\n\
                   5,e@example.com,+14155550105\n";
        let rows = all(csv, Some("user"));
        let ids: Vec<_> = rows
            .iter()
            .filter_map(|(_, f)| f.as_ref().ok().map(|f| f["user_id"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(ids, ["1", "3", "5"], "{rows:?}");
        let refused: Vec<_> = rows.iter().filter(|(_, f)| f.is_err()).map(|(l, _)| *l).collect();
        assert_eq!(refused, [3, 5], "{rows:?}");
        assert!(rows[1].1.as_ref().unwrap_err().contains("a quote never closed"), "{rows:?}");
        assert!(rows[3].1.as_ref().unwrap_err().contains("is not closed within"), "{rows:?}");
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
