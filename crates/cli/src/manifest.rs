//! Reading manifests: files, directories and stdin; multi-document YAML split
//! into documents that keep their original text (so untouched documents are
//! re-emitted byte for byte, comments included) and their line numbers (so
//! errors name the file and line).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One input source: a file, or stdin (`-`).
#[derive(Debug)]
pub struct Source {
    /// The name used in messages (`path` or `<stdin>`).
    pub name: String,
    pub text: String,
}

/// Expands the command-line arguments into sources, in order. Directories are
/// walked recursively in lexical order and contribute `.yaml`, `.yml` and
/// `.json` files; files named explicitly are read whatever their extension.
pub fn read_sources(args: &[String]) -> Result<Vec<Source>> {
    if args.is_empty() {
        bail!("please specify a kubernetes resource file (a path, a directory, or - for stdin)");
    }
    let mut out = Vec::new();
    for arg in args {
        if arg == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            out.push(Source {
                name: "<stdin>".into(),
                text,
            });
            continue;
        }
        let path = Path::new(arg);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {arg}"))?;
        if meta.is_dir() {
            for file in manifest_files(path)? {
                out.push(read_file(&file)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    Ok(out)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        let is_manifest = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if entry.file_type().is_file() && is_manifest {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

fn read_file(path: &Path) -> Result<Source> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

/// One YAML document of a stream.
#[derive(Debug)]
pub struct Document<'a> {
    /// The document's text, without a bare leading `---` line.
    pub text: &'a str,
    /// 1-based line of the document's first line in the source.
    pub line: usize,
    /// The parsed document; `Value::Null` for an empty document.
    pub value: Value,
}

/// A document that could not be parsed.
#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\r', '\n']);
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// True when a separator line carries nothing but (optionally) a comment.
fn is_bare_separator(line: &str) -> bool {
    let rest = line
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches("---")
        .trim();
    rest.is_empty() || rest.starts_with('#')
}

/// One document's text and first line, not yet parsed.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub text: &'a str,
    pub line: usize,
}

impl<'a> Chunk<'a> {
    pub fn parse(self) -> Result<Document<'a>, ParseError> {
        Ok(Document {
            text: self.text,
            line: self.line,
            value: parse_document(self.text, self.line)?,
        })
    }
}

/// Splits a stream at `---` lines, as Kubernetes' YAML reader does.
pub fn split_chunks(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new(); // (start byte, end byte, line)
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) && offset > 0 {
            chunks.push((start, offset, start_line));
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    chunks.push((start, text.len(), start_line));

    let mut out = Vec::with_capacity(chunks.len());
    for (s, e, line) in chunks {
        let mut chunk = &text[s..e];
        let mut line = line;
        if let Some(first) = chunk.split_inclusive('\n').next()
            && is_separator(first)
            && is_bare_separator(first)
        {
            chunk = &chunk[first.len()..];
            line += 1;
        }
        out.push(Chunk { text: chunk, line });
    }
    // A trailing separator leaves an empty last chunk: not a document.
    if out.len() > 1 && out.last().is_some_and(|d| d.text.trim().is_empty()) {
        out.pop();
    }
    out
}

/// Splits a stream and parses each document; the first bad document stops it.
#[cfg(test)]
pub fn split_documents(text: &str) -> Result<Vec<Document<'_>>, ParseError> {
    split_chunks(text).into_iter().map(Chunk::parse).collect()
}

fn parse_document(chunk: &str, first_line: usize) -> Result<Value, ParseError> {
    let has_content = chunk.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    if !has_content {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str::<Value>(chunk).map_err(|e| {
        let e = e.without_snippet();
        let line = e
            .location()
            .map(|l| first_line + l.line() as usize - 1)
            .unwrap_or(first_line);
        let message = e.to_string();
        // The library's message repeats the position relative to the document;
        // keep only the description.
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ParseError { line, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_tracks_lines() {
        let text = "a: 1\n---\n# comment\nb: 2\n--- # c\nc: 3\n---\n";
        let docs = split_documents(text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].line, 1);
        assert_eq!(docs[1].line, 3);
        assert_eq!(docs[1].text, "# comment\nb: 2\n");
        assert_eq!(docs[2].value["c"], 3);
    }

    #[test]
    fn empty_documents_are_null() {
        let docs = split_documents("---\n# only a comment\n---\na: 1\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs[0].value.is_null());
    }

    #[test]
    fn errors_name_the_line_in_the_stream() {
        let text = "a: 1\n---\nb: 2\nc: [1, 2\nd: 3\n";
        let err = split_documents(text).unwrap_err();
        assert!(err.line >= 4, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn separator_with_content_is_kept() {
        let docs = split_documents("--- {a: 1}\n").unwrap();
        assert_eq!(docs[0].value["a"], 1);
    }
}
