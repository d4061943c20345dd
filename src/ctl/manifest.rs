//! Reading manifests for `apply -f` / `delete -f`: files, directories (their .yaml,
//! .yml and .json files, sorted) and standard input; multi-document YAML; `List` kinds.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::Value;

/// Every object in `source` ("-" for stdin), in order.
pub fn load(source: &str) -> anyhow::Result<Vec<Value>> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return parse(&text, "<stdin>");
    }
    let path = Path::new(source);
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(load(&f.to_string_lossy())?);
        }
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {source}"))?;
    parse(&text, source)
}

pub fn parse(text: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).with_context(|| format!("{origin}: document {} is not valid YAML", i + 1))?;
        match value {
            Value::Null => continue,
            Value::Object(_) if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) && value["items"].is_array() => {
                out.extend(value["items"].as_array().cloned().unwrap_or_default())
            }
            Value::Object(_) => out.push(value),
            _ => bail!("{origin}: document {} is not an object", i + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let text = "a: 1\nkind: X\n---\n---\nkind: ConfigMapList\nitems: [{kind: ConfigMap}, {kind: ConfigMap}]\n";
        assert_eq!(parse(text, "t").unwrap().len(), 3);
        assert!(parse("- 1\n", "t").is_err());
        assert!(parse("a: [\n", "t").unwrap_err().to_string().contains("document 1"));
    }
}
