//! Checks the Kibana saved objects shipped in `dashboards/` against the sink itself: every
//! line is a saved object, data view titles match the data streams and dated indices the sink
//! writes (both modes), dashboard panels point at objects that exist, and every field a
//! visualization, saved search or query names is mapped by the sink's templates with a type
//! the operation accepts. Renaming a field in a template or in `document.rs` (and its template)
//! fails here until the dashboards follow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use super::config::IndexMode;
use super::templates::{DEAD_LETTER_DATASET, Family, install_requests};

const DASHBOARDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");

/// Lens' pseudo field of a document count.
const RECORDS: &str = "___records___";

/// One saved object and where it comes from (`file:line`).
struct SavedObject {
    origin: String,
    value: Value,
}

impl SavedObject {
    fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or_default()
    }

    fn id(&self) -> &str {
        self.value["id"].as_str().unwrap_or_default()
    }

    fn attributes(&self) -> &Value {
        &self.value["attributes"]
    }

    fn references(&self) -> Vec<Reference> {
        references_of(&self.value["references"])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    kind: String,
    id: String,
    name: String,
}

fn references_of(value: &Value) -> Vec<Reference> {
    value
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| Reference {
                    kind: r["type"].as_str().unwrap_or_default().to_owned(),
                    id: r["id"].as_str().unwrap_or_default().to_owned(),
                    name: r["name"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_lines(file: &str, text: &str) -> Vec<SavedObject> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| SavedObject {
            origin: format!("{file}:{}", n + 1),
            value: serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{file}:{}: not JSON: {err}", n + 1)),
        })
        .collect()
}

/// Every saved object of every `dashboards/*.ndjson`, in file order.
fn saved_objects() -> Vec<SavedObject> {
    let mut files: Vec<_> = std::fs::read_dir(DASHBOARDS_DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ndjson"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .ndjson file in {DASHBOARDS_DIR}");
    files
        .iter()
        .flat_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            parse_lines(&name, &std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// Parses a saved-object attribute that holds JSON as a string (`panelsJSON`, ...).
fn embedded_json(object: &SavedObject, pointer: &str) -> Value {
    let text = object
        .attributes()
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: no string at {pointer}", object.origin));
    serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("{}: {pointer} is not JSON: {err}", object.origin))
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Kind(kind) => kind.as_str(),
        Family::DeadLetter => DEAD_LETTER_DATASET,
    }
}

/// Fields a family's documents may carry: dotted path to mapping type, plus the dynamic
/// templates (`labels.*` and the like) as `(path_match, type)`.
#[derive(Debug, Default)]
struct Fields {
    mapped: BTreeMap<String, String>,
    dynamic: Vec<(String, String)>,
}

impl Fields {
    fn type_of(&self, field: &str) -> Option<&str> {
        if let Some(kind) = self.mapped.get(field) {
            return Some(kind);
        }
        self.dynamic
            .iter()
            .find(|(pattern, _)| glob_matches(pattern, field))
            .map(|(_, kind)| kind.as_str())
    }
}

fn flatten_properties(properties: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Some(properties) = properties.as_object() else {
        return;
    };
    for (name, mapping) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if mapping.get("properties").is_some() {
            flatten_properties(&mapping["properties"], &path, out);
        } else if let Some(kind) = mapping["type"].as_str()
            && kind != "object"
        {
            out.insert(path, kind.to_owned());
        }
    }
}

fn add_component(fields: &mut Fields, component: &Value) {
    let mappings = &component["template"]["mappings"];
    flatten_properties(&mappings["properties"], "", &mut fields.mapped);
    for template in mappings["dynamic_templates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for rule in template.as_object().into_iter().flat_map(|t| t.values()) {
            if let (Some(pattern), Some(kind)) = (
                rule["path_match"].as_str(),
                rule["mapping"]["type"].as_str(),
            ) {
                fields.dynamic.push((pattern.to_owned(), kind.to_owned()));
            }
        }
    }
}

/// The fields of each family, from the component templates the sink installs.
fn template_fields() -> Vec<(Family, Fields)> {
    let requests = install_requests(
        IndexMode::DataStream,
        "default",
        Duration::from_secs(86_400),
    )
    .expect("templates parse");
    let component = |name: &str| {
        requests
            .iter()
            .find(|(path, _)| path == &format!("/_component_template/{name}"))
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("no component template {name}"))
    };
    Family::ALL
        .into_iter()
        .map(|family| {
            let mut fields = Fields::default();
            add_component(&mut fields, component("pipewarden-ecs@mappings"));
            add_component(
                &mut fields,
                component(&format!("pipewarden.{}@mappings", family_name(family))),
            );
            (family, fields)
        })
        .collect()
}

/// `*`-only glob, as in data view titles and `path_match`.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Returns the data views whose title (comma-separated patterns) matches `target`.
fn data_views_matching<'a>(objects: &'a [SavedObject], target: &str) -> Vec<&'a str> {
    objects
        .iter()
        .filter(|o| o.kind() == "index-pattern")
        .filter(|o| {
            o.attributes()["title"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .any(|pattern| glob_matches(pattern.trim(), target))
        })
        .map(SavedObject::id)
        .collect()
}

/// Every write target of `family` the sink can produce (both modes, a few namespaces and days).
fn targets(family: Family) -> Vec<String> {
    let mut out = Vec::new();
    for mode in [IndexMode::DataStream, IndexMode::Index] {
        for namespace in ["default", "prod_eu1"] {
            for timestamp_ms in [0, 1_700_000_000_000] {
                out.push(family.target(mode, namespace, timestamp_ms));
            }
        }
    }
    out
}

/// Maps each data view id to the family whose documents it reads; panics when a target is
/// matched by no data view or by several, or a data view matches nothing.
fn data_view_families(objects: &[SavedObject]) -> BTreeMap<String, Family> {
    let mut by_view = BTreeMap::new();
    for family in Family::ALL {
        for target in targets(family) {
            let views = data_views_matching(objects, &target);
            assert_eq!(
                views.len(),
                1,
                "{target} ({}) must match exactly one data view, matches {views:?}",
                family_name(family)
            );
            if let Some(previous) = by_view.insert(views[0].to_owned(), family) {
                assert_eq!(
                    previous, family,
                    "data view {} matches two families",
                    views[0]
                );
            }
        }
    }
    for view in objects.iter().filter(|o| o.kind() == "index-pattern") {
        assert!(
            by_view.contains_key(view.id()),
            "{}: data view {} matches nothing the sink writes",
            view.origin,
            view.id()
        );
    }
    by_view
}

/// Field names a KQL query compares (`field : value`).
fn kql_fields(query: &str) -> Vec<String> {
    let regex = Regex::new(r"(?:^|[\s(])([A-Za-z_@][A-Za-z0-9_.@]*)\s*:").unwrap();
    regex
        .captures_iter(query)
        .map(|c| c[1].to_owned())
        .collect()
}

const NUMERIC: [&str; 8] = [
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
];

/// Returns why `kind` cannot serve a Lens `operation`, if it cannot.
fn operation_refuses(operation: &str, kind: &str) -> Option<&'static str> {
    let numeric = NUMERIC.contains(&kind);
    match operation {
        "date_histogram" if kind != "date" => Some("needs a date field"),
        "max" | "min" if !numeric && kind != "date" => Some("needs a number or date field"),
        "average" | "sum" | "median" | "percentile" | "standard_deviation" if !numeric => {
            Some("needs a numeric field")
        }
        "terms" | "last_value" | "unique_count" | "count" if kind == "text" => {
            Some("cannot aggregate a text field")
        }
        _ => None,
    }
}

/// Every field problem of the saved objects: fields the templates do not map, or map with a
/// type the operation refuses.
fn field_problems(objects: &[SavedObject]) -> Vec<String> {
    let families = data_view_families(objects);
    let fields: BTreeMap<String, Fields> = {
        let mut by_family = template_fields();
        families
            .iter()
            .map(|(view, family)| {
                let index = by_family.iter().position(|(f, _)| f == family).unwrap();
                (view.clone(), std::mem::take(&mut by_family[index].1))
            })
            .collect()
    };
    let mut problems = Vec::new();
    let mut check = |origin: &str, view: &str, field: &str, operation: Option<&str>| {
        let Some(view_fields) = fields.get(view) else {
            problems.push(format!("{origin}: data view {view} does not exist"));
            return;
        };
        match view_fields.type_of(field) {
            None => problems.push(format!(
                "{origin}: field `{field}` is not in the templates of data view {view}"
            )),
            Some(kind) => {
                if let Some(operation) = operation
                    && let Some(why) = operation_refuses(operation, kind)
                {
                    problems.push(format!("{origin}: {operation} on `{field}` ({kind}) {why}"));
                }
            }
        }
    };
    for object in objects {
        match object.kind() {
            "index-pattern" => {
                let time = object.attributes()["timeFieldName"].as_str().unwrap_or("");
                check(&object.origin, object.id(), time, Some("date_histogram"));
            }
            "search" => {
                let view = object
                    .references()
                    .into_iter()
                    .find(|r| r.name == "kibanaSavedObjectMeta.searchSourceJSON.index")
                    .map(|r| r.id)
                    .unwrap_or_default();
                let origin = format!("{} (search {})", object.origin, object.id());
                for column in object.attributes()["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    check(&origin, &view, column.as_str().unwrap_or(""), None);
                }
                for sort in object.attributes()["sort"].as_array().into_iter().flatten() {
                    check(
                        &origin,
                        &view,
                        sort[0].as_str().unwrap_or(""),
                        Some("terms"),
                    );
                }
                let source = embedded_json(object, "/kibanaSavedObjectMeta/searchSourceJSON");
                for field in kql_fields(source["query"]["query"].as_str().unwrap_or("")) {
                    check(&origin, &view, &field, None);
                }
            }
            "dashboard" => {
                let panels = embedded_json(object, "/panelsJSON");
                for panel in panels.as_array().into_iter().flatten() {
                    if panel["type"] != "lens" {
                        continue;
                    }
                    let attributes = &panel["embeddableConfig"]["attributes"];
                    let origin = format!(
                        "{} (dashboard {}, panel {})",
                        object.origin,
                        object.id(),
                        panel["panelIndex"]
                    );
                    let references = references_of(&attributes["references"]);
                    let state = &attributes["state"];
                    let layers = state["datasourceStates"]["formBased"]["layers"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    for (layer_id, layer) in &layers {
                        let name = format!("indexpattern-datasource-layer-{layer_id}");
                        let view = references
                            .iter()
                            .find(|r| r.name == name)
                            .map(|r| r.id.clone())
                            .unwrap_or_default();
                        let columns = layer["columns"].as_object().cloned().unwrap_or_default();
                        for column in columns.values() {
                            let operation = column["operationType"].as_str().unwrap_or("");
                            if let Some(field) = column["sourceField"].as_str()
                                && field != RECORDS
                            {
                                check(&origin, &view, field, Some(operation));
                            }
                            if let Some(field) = column["params"]["sortField"].as_str() {
                                check(&origin, &view, field, Some("terms"));
                            }
                            if let Some(query) = column["filter"]["query"].as_str() {
                                for field in kql_fields(query) {
                                    check(&origin, &view, &field, None);
                                }
                            }
                        }
                        for field in kql_fields(state["query"]["query"].as_str().unwrap_or("")) {
                            check(&origin, &view, &field, None);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn every_line_is_a_saved_object_with_type_id_and_attributes() {
    let objects = saved_objects();
    let mut seen = BTreeSet::new();
    for object in &objects {
        assert!(
            !object.kind().is_empty() && !object.id().is_empty(),
            "{}: needs `type` and `id`",
            object.origin
        );
        assert!(
            object.attributes().is_object(),
            "{}: needs `attributes`",
            object.origin
        );
        assert!(
            object.attributes()["title"].is_string(),
            "{}: needs a title",
            object.origin
        );
        assert!(
            seen.insert((object.kind().to_owned(), object.id().to_owned())),
            "{}: {} {} is defined twice",
            object.origin,
            object.kind(),
            object.id()
        );
        match object.kind() {
            "dashboard" => {
                assert!(embedded_json(object, "/panelsJSON").is_array());
                assert!(embedded_json(object, "/optionsJSON").is_object());
                embedded_json(object, "/kibanaSavedObjectMeta/searchSourceJSON");
            }
            "search" => {
                embedded_json(object, "/kibanaSavedObjectMeta/searchSourceJSON");
            }
            "index-pattern" => {}
            other => panic!("{}: unexpected saved object type {other}", object.origin),
        }
    }
    let titles: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o.kind() == "dashboard")
        .filter_map(|o| o.attributes()["title"].as_str())
        .collect();
    for title in [
        "pipewarden overview",
        "Kafka consumer lag",
        "Synthetic probes",
        "SLA alerts",
    ] {
        assert!(titles.contains(title), "no dashboard titled {title:?}");
    }
}

#[test]
fn data_view_titles_match_what_the_sink_writes_in_both_modes() {
    let objects = saved_objects();
    let families = data_view_families(&objects);
    let covered: BTreeSet<&str> = families.values().map(|f| family_name(*f)).collect();
    for family in Family::ALL {
        assert!(
            covered.contains(family_name(family)),
            "{}",
            family_name(family)
        );
    }
    for view in objects.iter().filter(|o| o.kind() == "index-pattern") {
        assert_eq!(
            view.attributes()["timeFieldName"],
            "@timestamp",
            "{}",
            view.origin
        );
    }
}

#[test]
fn dashboard_panels_reference_objects_that_exist() {
    let objects = saved_objects();
    let exists = |kind: &str, id: &str| objects.iter().any(|o| o.kind() == kind && o.id() == id);
    for object in &objects {
        for reference in object.references() {
            assert!(
                exists(&reference.kind, &reference.id),
                "{}: reference {reference:?} points at no saved object",
                object.origin
            );
        }
        if object.kind() != "dashboard" {
            continue;
        }
        let references = object.references();
        let panels = embedded_json(object, "/panelsJSON");
        let panels = panels.as_array().unwrap();
        assert!(!panels.is_empty(), "{}: no panels", object.origin);
        let mut indices = BTreeSet::new();
        for panel in panels {
            let index = panel["panelIndex"].as_str().unwrap_or_default();
            let origin = format!("{} panel {index:?}", object.origin);
            assert!(indices.insert(index.to_owned()), "{origin}: duplicate");
            assert_eq!(panel["gridData"]["i"], index, "{origin}");
            let width = panel["gridData"]["w"].as_u64().unwrap_or(0);
            let x = panel["gridData"]["x"].as_u64().unwrap_or(0);
            assert!(
                width > 0 && x + width <= 48,
                "{origin}: outside the 48-column grid"
            );
            match panel["type"].as_str() {
                Some("lens") => {
                    let attributes = &panel["embeddableConfig"]["attributes"];
                    let layers = attributes["state"]["datasourceStates"]["formBased"]["layers"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{origin}: no formBased layers"));
                    let embedded = references_of(&attributes["references"]);
                    for layer in layers.keys() {
                        let name = format!("indexpattern-datasource-layer-{layer}");
                        let inner = embedded
                            .iter()
                            .find(|r| r.name == name)
                            .unwrap_or_else(|| panic!("{origin}: layer {layer} has no data view"));
                        let outer = references
                            .iter()
                            .find(|r| r.name == format!("{index}:{name}"))
                            .unwrap_or_else(|| {
                                panic!("{origin}: dashboard lacks reference {index}:{name}")
                            });
                        assert_eq!(inner.id, outer.id, "{origin}");
                        assert!(exists("index-pattern", &inner.id), "{origin}: {inner:?}");
                    }
                    let columns: BTreeSet<String> = layers
                        .values()
                        .flat_map(|l| l["columns"].as_object().unwrap().keys().cloned())
                        .collect();
                    let visualization = &attributes["state"]["visualization"].to_string();
                    for column in &columns {
                        assert!(
                            visualization.contains(&format!("\"{column}\"")),
                            "{origin}: column {column} is not shown"
                        );
                    }
                }
                Some(kind @ ("search" | "visualization" | "lens_saved")) => {
                    let name = panel["panelRefName"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{origin}: a {kind} panel needs panelRefName"));
                    let reference = references
                        .iter()
                        .find(|r| r.name == format!("{index}:{name}"))
                        .unwrap_or_else(|| panic!("{origin}: no reference {index}:{name}"));
                    assert_eq!(reference.kind, kind, "{origin}");
                    assert!(exists(kind, &reference.id), "{origin}: {reference:?}");
                }
                other => panic!("{origin}: unexpected panel type {other:?}"),
            }
        }
    }
}

#[test]
fn every_field_the_dashboards_use_is_in_the_sink_templates() {
    let problems = field_problems(&saved_objects());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_renamed_or_mistyped_field_is_caught() {
    let objects = saved_objects();
    let renamed: Vec<SavedObject> = objects
        .iter()
        .map(|o| SavedObject {
            origin: o.origin.clone(),
            value: serde_json::from_str(
                &o.value
                    .to_string()
                    .replace("pipewarden.anomaly.score", "pipewarden.anomaly.scores"),
            )
            .unwrap(),
        })
        .collect();
    let problems = field_problems(&renamed);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`pipewarden.anomaly.scores` is not in the templates")),
        "{problems:?}"
    );
    assert_eq!(
        operation_refuses("average", "keyword"),
        Some("needs a numeric field")
    );
    assert_eq!(
        operation_refuses("terms", "text"),
        Some("cannot aggregate a text field")
    );
    assert_eq!(operation_refuses("max", "date"), None);
    assert!(glob_matches(
        "logs-pipewarden.anomaly-*",
        "logs-pipewarden.anomaly-default"
    ));
    assert!(glob_matches("a*b*c", "abc") && glob_matches("a*b*c", "axxbyyc"));
    assert!(!glob_matches("a*b*c", "acb") && !glob_matches("ab*ba", "aba"));
    assert_eq!(
        kql_fields("not monitor.type : \"deadman\" and (labels.slo:* or x: 1)"),
        ["monitor.type", "labels.slo", "x"]
    );
}
