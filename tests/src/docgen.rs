//! The reference documents generated from the contracts themselves:
//! `docs/dbus.md` from `dbus/org.pacsync.Daemon1.xml` (its comments are the
//! documentation) and `docs/api-reference.md` from the server's
//! `openapi.json`. A test compares the committed files with what these
//! functions make; `PACSYNC_BLESS=1` rewrites them.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde_json::Value;

/// The D-Bus reference, in Markdown, from the introspection XML.
pub fn dbus_reference(xml: &str) -> anyhow::Result<String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options).context("parsing the XML")?;
    let root = doc.root();
    let preface = root
        .children()
        .find(roxmltree::Node::is_comment)
        .and_then(|c| c.text())
        .map(dedent)
        .unwrap_or_default();
    let iface = root
        .descendants()
        .find(|n| n.has_tag_name("interface"))
        .context("no <interface>")?;
    let name = iface
        .attribute("name")
        .context("interface without a name")?;

    let mut properties = String::new();
    let mut methods = String::new();
    let mut signals = String::new();
    let mut comment: Option<String> = None;
    for node in iface.children() {
        if node.is_comment() {
            comment = node.text().map(dedent);
            continue;
        }
        if !node.is_element() {
            continue;
        }
        let doc = comment.take().unwrap_or_default();
        let member = node.attribute("name").unwrap_or_default();
        match node.tag_name().name() {
            "property" => {
                let ty = node.attribute("type").unwrap_or_default();
                let access = node.attribute("access").unwrap_or_default();
                let constant = node.children().any(|a| {
                    a.attribute("name") == Some("org.freedesktop.DBus.Property.EmitsChangedSignal")
                        && a.attribute("value") == Some("const")
                });
                let change = if constant {
                    "constant"
                } else {
                    "PropertiesChanged"
                };
                writeln!(
                    properties,
                    "### `{member}` — `{ty}`, {access}, {change}\n\n{doc}\n"
                )?;
            }
            "method" => {
                let args = |dir: &str| -> Vec<String> {
                    node.children()
                        .filter(|a| {
                            a.has_tag_name("arg") && a.attribute("direction").unwrap_or("in") == dir
                        })
                        .map(|a| {
                            format!(
                                "{} {}",
                                a.attribute("name").unwrap_or("_"),
                                a.attribute("type").unwrap_or_default()
                            )
                        })
                        .collect()
                };
                let (ins, outs) = (args("in"), args("out"));
                let outs = if outs.is_empty() {
                    String::new()
                } else {
                    format!(" → ({})", outs.join(", "))
                };
                writeln!(
                    methods,
                    "### `{member}({})`{outs}\n\n{doc}\n",
                    ins.join(", ")
                )?;
            }
            "signal" => {
                let args: Vec<String> = node
                    .children()
                    .filter(|a| a.has_tag_name("arg"))
                    .map(|a| {
                        format!(
                            "{} {}",
                            a.attribute("name").unwrap_or("_"),
                            a.attribute("type").unwrap_or_default()
                        )
                    })
                    .collect();
                writeln!(signals, "### `{member}({})`\n\n{doc}\n", args.join(", "))?;
            }
            other => bail!("unexpected <{other}> in the interface"),
        }
    }

    let mut out = String::new();
    writeln!(
        out,
        "# D-Bus reference: `{name}`\n\n\
         <!-- Generated from dbus/{name}.xml by the tests crate (docgen.rs); \
         do not edit: edit the XML's comments and run \
         `PACSYNC_BLESS=1 cargo nextest run -p pacsync-tests docs`. -->\n"
    )?;
    writeln!(out, "```text\n{preface}\n```\n")?;
    writeln!(
        out,
        "Try it: `busctl --system introspect {name} /org/pacsync/Daemon1`, \
         `busctl --system get-property {name} /org/pacsync/Daemon1 {name} Status`, \
         or `gdbus monitor --system --dest {name}`.\n"
    )?;
    writeln!(out, "## Properties\n\n{properties}")?;
    writeln!(out, "## Methods\n\n{methods}")?;
    write!(out, "## Signals\n\n{}", signals.trim_end())?;
    out.push('\n');
    Ok(out)
}

/// Remove the common indentation of a comment's lines, and blank edges.
fn dedent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let indent = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push(line.trim().to_owned());
        } else if line.len() >= indent {
            out.push(line[indent..].trim_end().to_owned());
        } else {
            out.push(line.trim().to_owned());
        }
    }
    out.join("\n").trim().to_owned()
}

/// The REST reference, in Markdown, from the OpenAPI description: one
/// section per tag, each route with who may call it, its parameters, body
/// and responses.
pub fn api_reference(openapi: &Value) -> anyhow::Result<String> {
    let paths = openapi["paths"].as_object().context("no paths")?;
    let mut by_tag: std::collections::BTreeMap<String, Vec<(String, String, &Value)>> =
        Default::default();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().context("operations")? {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            by_tag
                .entry(tag)
                .or_default()
                .push((path.clone(), method.to_uppercase(), op));
        }
    }
    let mut out = String::new();
    writeln!(
        out,
        "# REST API reference\n\n\
         <!-- Generated from pacsync-server/src/api/openapi.json by the tests crate \
         (docgen.rs); do not edit: edit openapi.json and run \
         `PACSYNC_BLESS=1 cargo nextest run -p pacsync-tests docs`. -->\n\n\
         {}\n\n\
         The server serves this description at `GET /api/openapi.json` (OpenAPI {}). \
         Conventions, authentication, pagination, errors and the WebSocket channel \
         are explained in [api.md](api.md).\n",
        openapi["info"]["description"].as_str().unwrap_or_default(),
        openapi["openapi"].as_str().unwrap_or("3")
    )?;
    writeln!(out, "## Routes\n")?;
    for (tag, routes) in &by_tag {
        writeln!(out, "- [{tag}](#{tag})")?;
        let _ = routes;
    }
    out.push('\n');
    for (tag, routes) in &by_tag {
        writeln!(out, "## {tag}\n")?;
        for (path, method, op) in routes {
            writeln!(
                out,
                "### `{method} {path}`\n\n{}  \nCallers: {}\n",
                op["summary"].as_str().unwrap_or_default(),
                op["x-pacsync-callers"].as_str().unwrap_or("?")
            )?;
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                writeln!(out, "| parameter | in | type | required | description |")?;
                writeln!(out, "|---|---|---|---|---|")?;
                for p in params {
                    writeln!(
                        out,
                        "| `{}` | {} | {} | {} | {} |",
                        p["name"].as_str().unwrap_or_default(),
                        p["in"].as_str().unwrap_or_default(),
                        schema_name(&p["schema"]),
                        if p["required"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            "no"
                        },
                        p["description"].as_str().unwrap_or_default()
                    )?;
                }
                out.push('\n');
            }
            if let Some(body) = op["requestBody"]["content"].as_object() {
                for (media, content) in body {
                    writeln!(out, "Body ({media}): {}\n", schema_name(&content["schema"]))?;
                }
            }
            if let Some(responses) = op["responses"].as_object() {
                let list: Vec<String> = responses
                    .iter()
                    .map(|(code, r)| {
                        let schema = r["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .map(|c| format!(" ({})", schema_name(&c["schema"])))
                            .unwrap_or_default();
                        format!(
                            "`{code}` {}{schema}",
                            r["description"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                writeln!(out, "Responses: {}\n", list.join("; "))?;
            }
        }
    }
    if let Some(schemas) = openapi["components"]["schemas"].as_object() {
        writeln!(out, "## Schemas\n")?;
        for (name, schema) in schemas {
            writeln!(
                out,
                "### {name}\n\n```json\n{}\n```\n",
                serde_json::to_string_pretty(schema)?
            )?;
        }
    }
    Ok(out.trim_end().to_owned() + "\n")
}

/// A short human name of a JSON schema.
fn schema_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return format!("`{}`", r.rsplit('/').next().unwrap_or(r));
    }
    if let Some(all) = schema["allOf"].as_array() {
        return all.iter().map(schema_name).collect::<Vec<_>>().join(" + ");
    }
    match schema["type"].as_str() {
        Some("array") => format!("array of {}", schema_name(&schema["items"])),
        Some("object") => match schema["properties"].as_object() {
            Some(props) if !props.is_empty() => {
                let fields: Vec<String> = props
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", schema_name(v).replace('`', "")))
                    .collect();
                format!("`{{{}}}`", fields.join(", "))
            }
            _ => "object".to_owned(),
        },
        Some(t) => t.to_owned(),
        None => "any".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbus_members_carry_their_comments() {
        let xml = r#"<node><!-- the preface -->
          <interface name="a.B1">
            <!-- Counts things. -->
            <property name="Count" type="u" access="read"/>
            <!-- Does it. -->
            <method name="Do"><arg name="x" type="s" direction="in"/><arg name="y" type="u" direction="out"/></method>
            <signal name="Done"><arg name="z" type="s"/></signal>
          </interface></node>"#;
        let md = dbus_reference(xml).expect("valid XML");
        assert!(md.contains("### `Count` — `u`, read, PropertiesChanged\n\nCounts things."));
        assert!(md.contains("### `Do(x s)` → (y u)\n\nDoes it."));
        assert!(md.contains("### `Done(z s)`"));
    }

    #[test]
    fn schema_names_are_short() {
        let v: Value =
            serde_json::json!({"type":"array","items":{"$ref":"#/components/schemas/Pool"}});
        assert_eq!(schema_name(&v), "array of `Pool`");
    }
}
