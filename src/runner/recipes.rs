//! Recipes: the commands the server may run, written by the admin in
//! `<root>/recipes.json`, and the checking of a client's params against one.
//!
//! Pure: text in, values out. A client chooses a recipe by name and supplies
//! params; each param is checked against the recipe's spec (type, bounds,
//! enum, pattern) and becomes the value of one `TRAINBOX_PARAM_<NAME>`
//! environment variable. Nothing a client sends reaches argv or a shell.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::cgroup::Limits;
use crate::text::printable;

/// Longest string param value accepted.
pub const STRING_PARAM_MAX: usize = 4096;

/// One recipe: the command (program and fixed arguments) and its params.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub command: Vec<String>,
    pub params: BTreeMap<String, ParamSpec>,
    /// Written to the job's cgroup where there is one (`runner::cgroup`).
    pub limits: Limits,
}

/// What values a param takes.
#[derive(Debug, Clone)]
pub enum ParamSpec {
    Int {
        min: Option<i64>,
        max: Option<i64>,
        default: Option<i64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
        default: Option<f64>,
    },
    String {
        choices: Option<Vec<String>>,
        pattern: Option<regex_lite::Regex>,
        default: Option<String>,
    },
    Bool {
        default: Option<bool>,
    },
}

impl ParamSpec {
    /// What a client may send, as JSON: `type`, and `min`, `max`, `enum`,
    /// `pattern` and `default` where the admin set them.
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let mut out = match self {
            ParamSpec::Int { min, max, default } => {
                json!({ "type": "int", "min": min, "max": max, "default": default })
            }
            ParamSpec::Float { min, max, default } => {
                json!({ "type": "float", "min": min, "max": max, "default": default })
            }
            ParamSpec::String {
                choices,
                pattern,
                default,
            } => json!({
                "type": "string",
                "enum": choices,
                // As the admin wrote it: the anchors are ours.
                "pattern": pattern.as_ref().map(|p| {
                    let text = p.as_str();
                    text.strip_prefix("^(?:")
                        .and_then(|t| t.strip_suffix(")$"))
                        .unwrap_or(text)
                        .to_owned()
                }),
                "default": default,
            }),
            ParamSpec::Bool { default } => json!({ "type": "bool", "default": default }),
        };
        if let Some(fields) = out.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        out
    }
}

/// All recipes of a root, by name.
#[derive(Debug, Clone, Default)]
pub struct Recipes(pub BTreeMap<String, Recipe>);

/// Why `recipes.json` cannot be used (the admin's to fix; answered 503).
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeError(pub String);

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recipes.json: {}", self.0)
    }
}

impl std::error::Error for RecipeError {}

fn file_error(message: impl Into<String>) -> RecipeError {
    RecipeError(message.into())
}

/// A param name as it may appear in an environment variable name.
fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Recipes {
    /// Parses `recipes.json`: `{"recipes": {name: {"command": [...], "params": {...}}}}`.
    pub fn parse(bytes: &[u8]) -> Result<Recipes, RecipeError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| file_error(format!("not JSON: {e}")))?;
        let Some(Value::Object(recipes)) = doc.get("recipes") else {
            return Err(file_error("expected {\"recipes\": {...}}"));
        };
        let mut out = BTreeMap::new();
        for (name, recipe) in recipes {
            out.insert(
                name.clone(),
                parse_recipe(recipe)
                    .map_err(|e| file_error(format!("recipe '{name}': {}", e.0)))?,
            );
        }
        Ok(Recipes(out))
    }

    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.0.get(name)
    }
}

fn parse_recipe(value: &Value) -> Result<Recipe, RecipeError> {
    let command: Vec<String> = match value.get("command") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| file_error("\"command\" must be a list of strings"))?,
        _ => {
            return Err(file_error(
                "\"command\" must be a non-empty list of strings",
            ));
        }
    };
    let mut params = BTreeMap::new();
    match value.get("params") {
        None => {}
        Some(Value::Object(specs)) => {
            for (name, spec) in specs {
                if !valid_param_name(name) {
                    return Err(file_error(format!(
                        "param name '{name}' must be lowercase letters, digits and _"
                    )));
                }
                params.insert(
                    name.clone(),
                    parse_spec(spec).map_err(|e| file_error(format!("param '{name}': {}", e.0)))?,
                );
            }
        }
        Some(_) => return Err(file_error("\"params\" must be an object")),
    }
    let limits = match value.get("limits") {
        None | Some(Value::Null) => Limits::default(),
        Some(Value::Object(limits)) => parse_limits(limits)?,
        Some(_) => return Err(file_error("\"limits\" must be an object")),
    };
    Ok(Recipe {
        command,
        params,
        limits,
    })
}

/// `{"memory_max": "24G", "cpu_weight": 100, "pids_max": 4096}`, each
/// optional; sizes take K, M, G and T (powers of 1024) or plain bytes.
fn parse_limits(limits: &serde_json::Map<String, Value>) -> Result<Limits, RecipeError> {
    let mut out = Limits::default();
    for (key, value) in limits {
        let bad = |what: &str| file_error(format!("limits.{key}: {what}"));
        match key.as_str() {
            "memory_max" => {
                let bytes = match value {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => parse_size(s),
                    _ => None,
                };
                out.memory_max = Some(bytes.filter(|b| *b >= 1 << 20).ok_or_else(|| {
                    bad("expected a size of at least 1M, like \"24G\" or a number of bytes")
                })?);
            }
            "cpu_weight" => {
                let weight = value.as_u64().filter(|w| (1..=10_000).contains(w));
                out.cpu_weight = Some(weight.ok_or_else(|| bad("expected 1 to 10000"))? as u32);
            }
            "pids_max" => {
                out.pids_max = Some(
                    value
                        .as_u64()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a positive number"))?,
                );
            }
            _ => return Err(bad("unknown limit (memory_max, cpu_weight, pids_max)")),
        }
    }
    Ok(out)
}

/// `24G`, `512M`, `1T`, `1048576` → bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    let number: u64 = digits.trim().parse().ok()?;
    number.checked_mul(1u64 << shift)
}

fn parse_spec(spec: &Value) -> Result<ParamSpec, RecipeError> {
    let int = |key: &str| -> Result<Option<i64>, RecipeError> {
        match spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| file_error(format!("\"{key}\" must be an integer"))),
        }
    };
    let float = |key: &str| -> Result<Option<f64>, RecipeError> {
        match spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| file_error(format!("\"{key}\" must be a number"))),
        }
    };
    let parsed = match spec.get("type").and_then(Value::as_str) {
        Some("int") => ParamSpec::Int {
            min: int("min")?,
            max: int("max")?,
            default: int("default")?,
        },
        Some("float") => ParamSpec::Float {
            min: float("min")?,
            max: float("max")?,
            default: float("default")?,
        },
        Some("string") => {
            let choices = match spec.get("enum") {
                None => None,
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| file_error("\"enum\" must be a list of strings"))?,
                ),
                Some(_) => return Err(file_error("\"enum\" must be a list of strings")),
            };
            let pattern = match spec.get("pattern") {
                None => None,
                Some(Value::String(p)) => Some(
                    // Anchored: the whole value must match, not a part of it.
                    regex_lite::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| file_error(format!("\"pattern\" is not a regex: {e}")))?,
                ),
                Some(_) => return Err(file_error("\"pattern\" must be a string")),
            };
            let default = match spec.get("default") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(file_error("\"default\" must be a string")),
            };
            ParamSpec::String {
                choices,
                pattern,
                default,
            }
        }
        Some("bool") => ParamSpec::Bool {
            default: match spec.get("default") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(file_error("\"default\" must be true or false")),
            },
        },
        _ => return Err(file_error("\"type\" must be int, float, string or bool")),
    };
    Ok(parsed)
}

/// Why a client's params do not fit the recipe (answered 400); the text
/// names the param.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

/// Checks a client's params against `recipe`; returns each param's value as
/// it goes into `TRAINBOX_PARAM_<NAME>`, or what does not fit.
pub fn check_params(
    recipe: &Recipe,
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, ParamError> {
    check_each(recipe, given).map_err(ParamError)
}

fn check_each(
    recipe: &Recipe,
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, String> {
    if let Some(unknown) = given.keys().find(|k| !recipe.params.contains_key(*k)) {
        return Err(format!("Unknown param '{}'", printable(unknown)));
    }
    let mut out = BTreeMap::new();
    for (name, spec) in &recipe.params {
        let value = given.get(name).filter(|v| !v.is_null());
        let text = match spec {
            ParamSpec::Int { min, max, default } => {
                let v = match value {
                    Some(v) => v
                        .as_i64()
                        .or_else(|| {
                            v.as_f64()
                                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                                .map(|f| f as i64)
                        })
                        .ok_or_else(|| format!("Param '{name}' must be an integer"))?,
                    None => default.ok_or_else(|| format!("Param '{name}' is required"))?,
                };
                check_bounds(name, v, *min, *max)?;
                v.to_string()
            }
            ParamSpec::Float { min, max, default } => {
                let v = match value {
                    Some(v) => v
                        .as_f64()
                        .ok_or_else(|| format!("Param '{name}' must be a number"))?,
                    None => default.ok_or_else(|| format!("Param '{name}' is required"))?,
                };
                check_bounds(name, v, *min, *max)?;
                v.to_string()
            }
            ParamSpec::String {
                choices,
                pattern,
                default,
            } => {
                let v = match value {
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(format!("Param '{name}' must be a string")),
                    None => default
                        .clone()
                        .ok_or_else(|| format!("Param '{name}' is required"))?,
                };
                if v.len() > STRING_PARAM_MAX || v.contains('\0') {
                    return Err(format!("Param '{name}' is too long or holds NUL"));
                }
                if let Some(choices) = choices {
                    if !choices.contains(&v) {
                        return Err(format!(
                            "Param '{name}' must be one of: {}",
                            choices.join(", ")
                        ));
                    }
                }
                if let Some(pattern) = pattern {
                    if !pattern.is_match(&v) {
                        return Err(format!("Param '{name}' does not match its pattern"));
                    }
                }
                v
            }
            ParamSpec::Bool { default } => {
                let v = match value {
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(format!("Param '{name}' must be true or false")),
                    None => default.ok_or_else(|| format!("Param '{name}' is required"))?,
                };
                v.to_string()
            }
        };
        out.insert(name.clone(), text);
    }
    Ok(out)
}

fn check_bounds<T: PartialOrd + fmt::Display + Copy>(
    name: &str,
    v: T,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), String> {
    if let Some(min) = min {
        if v < min {
            return Err(format!("Param '{name}' must be at least {min}"));
        }
    }
    if let Some(max) = max {
        if v > max {
            return Err(format!("Param '{name}' must be at most {max}"));
        }
    }
    Ok(())
}

/// The environment variable for a param: `steps` → `TRAINBOX_PARAM_STEPS`.
pub fn env_name(param: &str) -> String {
    format!("TRAINBOX_PARAM_{}", param.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_parse_and_refuse_nonsense() {
        let recipes = Recipes::parse(
            br#"{"recipes": {"big": {"command": ["t"],
                "limits": {"memory_max": "24G", "cpu_weight": 200, "pids_max": 4096}}}}"#,
        )
        .unwrap();
        let limits = &recipes.get("big").unwrap().limits;
        assert_eq!(limits.memory_max, Some(24 << 30));
        assert_eq!(limits.cpu_weight, Some(200));
        assert_eq!(limits.pids_max, Some(4096));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("2x"), None);
        for bad in [
            r#"{"memory_max": "10"}"#,
            r#"{"memory_max": "lots"}"#,
            r#"{"cpu_weight": 0}"#,
            r#"{"pids_max": -1}"#,
            r#"{"swap_max": "1G"}"#,
        ] {
            let doc = format!(r#"{{"recipes": {{"r": {{"command": ["t"], "limits": {bad}}}}}}}"#);
            assert!(Recipes::parse(doc.as_bytes()).is_err(), "{bad}");
        }
    }

    use super::*;
    use serde_json::json;

    fn recipes() -> Recipes {
        Recipes::parse(
            br#"{"recipes": {
              "demo": {"command": ["trainbox", "demo-trainer"],
                       "params": {"steps": {"type": "int", "min": 1, "max": 100000, "default": 300},
                                  "lr":    {"type": "float", "min": 0, "max": 1, "default": 0.05}}},
              "finetune": {"command": ["/usr/bin/python3", "/opt/train/finetune.py"],
                           "params": {"base": {"type": "string", "enum": ["tiny", "small"]},
                                      "tag": {"type": "string", "pattern": "[a-z]{1,8}", "default": "x"},
                                      "fp16": {"type": "bool", "default": false}}}}}"#,
        )
        .unwrap()
    }

    fn check(recipe: &str, params: Value) -> Result<BTreeMap<String, String>, String> {
        let Value::Object(map) = params else { panic!() };
        check_params(recipes().get(recipe).unwrap(), &map).map_err(|e| e.0)
    }

    #[test]
    fn defaults_fill_in_and_values_become_text() {
        let env = check("demo", json!({"steps": 500})).unwrap();
        assert_eq!(env["steps"], "500");
        assert_eq!(env["lr"], "0.05");
        let env = check("finetune", json!({"base": "tiny", "fp16": true})).unwrap();
        assert_eq!(
            (
                env["base"].as_str(),
                env["tag"].as_str(),
                env["fp16"].as_str()
            ),
            ("tiny", "x", "true")
        );
        assert_eq!(env_name("steps"), "TRAINBOX_PARAM_STEPS");
    }

    #[test]
    fn every_bad_param_is_named() {
        let cases = [
            ("demo", json!({"epochs": 1}), "Unknown param 'epochs'"),
            (
                "demo",
                json!({"steps": "500"}),
                "Param 'steps' must be an integer",
            ),
            (
                "demo",
                json!({"steps": 1.5}),
                "Param 'steps' must be an integer",
            ),
            (
                "demo",
                json!({"steps": 0}),
                "Param 'steps' must be at least 1",
            ),
            (
                "demo",
                json!({"steps": 100001}),
                "Param 'steps' must be at most 100000",
            ),
            ("demo", json!({"lr": 2.0}), "Param 'lr' must be at most 1"),
            ("demo", json!({"lr": true}), "Param 'lr' must be a number"),
            ("finetune", json!({}), "Param 'base' is required"),
            (
                "finetune",
                json!({"base": "huge"}),
                "Param 'base' must be one of: tiny, small",
            ),
            (
                "finetune",
                json!({"base": "tiny", "tag": "UPPER"}),
                "Param 'tag' does not match its pattern",
            ),
            (
                "finetune",
                json!({"base": "tiny", "tag": "abc; rm -rf /"}),
                "Param 'tag' does not match its pattern",
            ),
            (
                "finetune",
                json!({"base": "tiny", "fp16": "yes"}),
                "Param 'fp16' must be true or false",
            ),
        ];
        for (recipe, params, detail) in cases {
            assert_eq!(
                check(recipe, params.clone()),
                Err(detail.to_owned()),
                "{params}"
            );
        }
    }

    #[test]
    fn bad_recipe_files_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"recipes": []}"#,
            br#"{"recipes": {"a": {"command": []}}}"#,
            br#"{"recipes": {"a": {"command": ["x", 1]}}}"#,
            br#"{"recipes": {"a": {"command": ["x"], "params": {"Bad-Name": {"type": "int"}}}}}"#,
            br#"{"recipes": {"a": {"command": ["x"], "params": {"p": {"type": "complex"}}}}}"#,
            br#"{"recipes": {"a": {"command": ["x"], "params": {"p": {"type": "string", "pattern": "("}}}}}"#,
        ] {
            assert!(Recipes::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
