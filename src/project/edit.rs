//! Edits of project YAML files that keep the rest of the text (comments, order, quoting) as the
//! user wrote it: one block-mapping entry of a sequence item is replaced or added, line by line.

use super::YamlDoc;

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The lines `[start, end)` of the entry starting at `start` whose keys are indented `indent`:
/// up to the next content line indented `indent` or less, without trailing blank or comment
/// lines (they belong to what follows).
fn entry_end(lines: &[&str], start: usize, indent: usize) -> usize {
    let mut end = start + 1;
    let mut last_content = start + 1;
    while end < lines.len() {
        let l = lines[end];
        if is_content(l) {
            if indent_of(l) <= indent {
                break;
            }
            last_content = end + 1;
        } else if !l.trim().is_empty() && indent_of(l) <= indent {
            break; // a comment at the key's level: about the next key
        }
        end += 1;
    }
    last_content
}

/// The text with the mapping at `pointer` (a block mapping in a sequence item, as a source
/// table is) given the entry `key:` followed by `block` (lines indented under the key), with
/// `comment` (a `# ...` line) above it. An existing `key` entry and the entries named in
/// `replaces` are removed, each with the comment line right above it when that line starts with
/// `marker` (a comment this function wrote before); the new entry takes the first one's place,
/// else it ends the mapping.
pub fn set_entry(
    doc: &YamlDoc,
    pointer: &str,
    key: &str,
    (comment, marker): (&str, &str),
    block: &[String],
    replaces: &[&str],
) -> Result<String, String> {
    let lines: Vec<&str> = doc.source.text.lines().collect();
    let (line, _) = doc.positions.value(pointer);
    let first = lines.get(line.saturating_sub(1)).ok_or("the entry is not in the file")?;
    // `- key: value`: the keys are indented as the first one, after the dash.
    let dash = indent_of(first);
    let rest = first[dash..].strip_prefix('-').ok_or("the entry is not a block sequence item (`- key: ...`)")?;
    let indent = dash + 1 + indent_of(rest);
    if first[indent..].starts_with('{') {
        return Err("the entry is written in flow style ({...}): write it as a block mapping first".into());
    }
    let item_start = line - 1;
    let item_end = entry_end(&lines, item_start, indent.saturating_sub(1));
    let mut drop: Vec<(usize, usize)> = Vec::new();
    let mut at = item_end;
    for name in std::iter::once(key).chain(replaces.iter().copied()) {
        let prefix = format!("{name}:");
        let found = (item_start + 1..item_end)
            .find(|i| indent_of(lines[*i]) == indent && lines[*i].trim_start().starts_with(&prefix));
        if let Some(start) = found {
            let ours = start > item_start + 1 && lines[start - 1].trim_start().starts_with(marker);
            let begin = if ours { start - 1 } else { start };
            drop.push((begin, entry_end(&lines, start, indent)));
            at = at.min(begin);
        } else if first[indent.min(first.len())..].starts_with(&prefix) {
            return Err(format!("`{name}` is the entry's first key: put `name:` first"));
        }
    }
    let pad = " ".repeat(indent);
    let mut new_lines: Vec<String> = vec![format!("{pad}{comment}"), format!("{pad}{key}:")];
    new_lines.extend(block.iter().map(|b| format!("{pad}  {b}")));
    let mut out: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == at {
            out.append(&mut new_lines);
        }
        if !drop.iter().any(|(b, e)| (*b..*e).contains(&i)) {
            out.push(l.to_string());
        }
    }
    out.append(&mut new_lines);
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}
