//! The rules table of docs/wire-format.md §13 stays true: every test it names exists, every rule
//! ID is cited where the rule is documented and checked (`Rule R-...` in src/), and every ID
//! cited in src/ has a row.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One row of the table: the rule ID and the text of its test column.
struct Row {
    id: String,
    tests: String,
}

fn rows() -> Vec<Row> {
    let doc = fs::read_to_string(Path::new(ROOT).join("docs/wire-format.md")).unwrap();
    let section = doc
        .split("\n## 13. Rules\n")
        .nth(1)
        .expect("docs/wire-format.md has a section \"13. Rules\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| R-"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert_eq!(
                cells.len(),
                4,
                "a row has ID, reason, check and test: {line}"
            );
            Row {
                id: cells[0].trim_start_matches("| ").to_owned(),
                tests: cells[3].trim_end_matches(" |").to_owned(),
            }
        })
        .collect()
}

/// `tests/<file>.rs::<name>` references between backticks.
fn test_references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| quoted.split_once("::"))
        .filter(|(file, _)| file.starts_with("tests/") && file.ends_with(".rs"))
        .map(|(file, name)| (file.to_owned(), name.to_owned()))
        .collect()
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every `Rule R-XXX-n` cited in src/, with how often.
fn cited_in_src() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let mut cited = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("Rule") {
            // "Rule R-OP-3." or "Rules R-GID-2, R-GID-3": every ID up to the end of the clause.
            let rest = &text[at..];
            let clause = rest.split(['.', ':', '\n']).next().unwrap_or(rest);
            for word in clause.split([' ', ',']) {
                if let Some(id) = word.strip_prefix("R-") {
                    if id.rsplit_once('-').is_some_and(|(_, n)| {
                        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
                    }) {
                        cited.push(format!("R-{id}"));
                    }
                }
            }
        }
    }
    cited
}

#[test]
fn every_test_the_rules_table_names_exists() {
    let rows = rows();
    assert!(rows.len() > 50, "the table lists the rules");
    let mut named = 0;
    for row in &rows {
        for (file, name) in test_references(&row.tests) {
            let source = fs::read_to_string(Path::new(ROOT).join(&file))
                .unwrap_or_else(|e| panic!("{}: {file}: {e}", row.id));
            assert!(
                source.contains(&format!("fn {name}(")),
                "{}: no test {name} in {file}",
                row.id
            );
            named += 1;
        }
        assert!(
            row.tests.starts_with('`') || row.tests.starts_with("none"),
            "{}: name a test, or say why there is none",
            row.id
        );
    }
    assert!(named > 50);
}

#[test]
fn every_rule_is_cited_in_the_source_and_every_citation_has_a_row() {
    let rows = rows();
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "rule IDs are unique");
    let cited = cited_in_src();
    for id in &ids {
        // Once where the refusal is documented, at least once where it is checked.
        let count = cited.iter().filter(|c| c == id).count();
        assert!(count >= 2, "{id} is cited {count} times in src/");
    }
    for id in &cited {
        assert!(
            ids.contains(id.as_str()),
            "{id} is cited in src/ but has no row"
        );
    }
}
