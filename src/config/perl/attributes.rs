//! Gearman::Driver's method attributes (`: Job : MinProcesses(0) :
//! Encode(to_json)`) and what they mean here: parsing them as Perl wrote them,
//! and combining a method's own with its class's `default_attributes` and
//! `override_attributes`. Pure, so every rule is tested here.
//!
//! The meaning follows Gearman::Driver: defaults apply where the method sets
//! nothing, overrides always win; `Encode`/`Decode` without a name mean the
//! methods `encode`/`decode`; `ProcessGroup` without a name is the method's
//! own; `MinChilds`/`MaxChilds` are the older spellings of
//! `MinProcesses`/`MaxProcesses`. Where Gearman::Driver only warned about an
//! attribute it did not know, a job method's unknown or malformed attribute is
//! an error here: a typo in `MaxProcesses` would otherwise run the job with
//! limits nobody asked for.

use std::collections::BTreeMap;

use crate::config::worker_file::JobAttrs;

/// Attribute names gearman-driver knows, for error messages.
const KNOWN: &str = "Job, MinProcesses, MaxProcesses, ProcessGroup, Encode, Decode \
                     (Gearman::Driver's; MinChilds and MaxChilds also work) and Timeout, \
                     MaxJobs, MaxLifetime, MaxRSS, StartTimeout (gearman-driver's)";

/// Attributes of one method, or of a class's default/override hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrSet {
    pub job: bool,
    /// The limits worker files also have. `process_group` is `Some("")` for
    /// a `ProcessGroup` without a name: the method's own name, see [`AttrSet::group_for`].
    pub limits: JobAttrs,
    pub encode: Option<String>,
    pub decode: Option<String>,
}

impl AttrSet {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &AttrSet) -> AttrSet {
        AttrSet {
            job: self.job || fallback.job,
            limits: self.limits.or(&fallback.limits),
            encode: self.encode.clone().or_else(|| fallback.encode.clone()),
            decode: self.decode.clone().or_else(|| fallback.decode.clone()),
        }
    }

    /// The process group a method with these attributes joins, if any.
    pub fn group_for(&self, method: &str) -> Option<String> {
        match self.limits.process_group.as_deref() {
            Some("") => Some(method.to_string()),
            Some(group) => Some(group.to_string()),
            None => None,
        }
    }
}

/// A problem with one attribute: the attribute as written, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    pub attribute: String,
    pub message: String,
}

/// `MinProcesses(0)` is `("MinProcesses", Some("0"))`, `Job` is
/// `("Job", None)`; an empty or quoted value is unquoted (`Encode('')` is
/// `Encode`).
pub fn split(raw: &str) -> (&str, Option<&str>) {
    let raw = raw.trim();
    let Some(open) = raw.find('(') else {
        return (raw, None);
    };
    let name = raw[..open].trim();
    let inner = raw[open + 1..]
        .strip_suffix(')')
        .unwrap_or(&raw[open + 1..]);
    let value = unquote(inner.trim());
    (name, (!value.is_empty()).then_some(value))
}

fn unquote(value: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner.trim();
        }
    }
    value
}

/// The attributes of a method as MooseX::MethodAttributes reports them
/// (`["Job", "MinProcesses(0)"]`); a later one wins over an earlier one of
/// the same name.
pub fn from_list(raw: &[String]) -> (AttrSet, Vec<AttrError>) {
    let mut set = AttrSet::default();
    let mut errors = Vec::new();
    for attribute in raw {
        let (name, value) = split(attribute);
        if let Err(message) = apply(&mut set, name, value) {
            errors.push(AttrError {
                attribute: attribute.clone(),
                message,
            });
        }
    }
    (set, errors)
}

/// A class's `default_attributes` or `override_attributes` hash
/// (`{ MinProcesses => 0, Encode => 'encode' }`).
pub fn from_hash(hash: &BTreeMap<String, Option<String>>) -> (AttrSet, Vec<AttrError>) {
    let mut set = AttrSet::default();
    let mut errors = Vec::new();
    for (name, value) in hash {
        let value = value
            .as_deref()
            .map(|v| unquote(v.trim()))
            .filter(|v| !v.is_empty());
        if let Err(message) = apply(&mut set, name, value) {
            let attribute = match value {
                Some(v) => format!("{name} => {v}"),
                None => format!("{name} => undef"),
            };
            errors.push(AttrError { attribute, message });
        }
    }
    (set, errors)
}

/// Sets one attribute; an unknown name or a value that is not a whole
/// number where one is needed is an error message.
pub fn apply(set: &mut AttrSet, name: &str, value: Option<&str>) -> Result<(), String> {
    let limits = &mut set.limits;
    match name {
        "Job" => set.job = true,
        "MinProcesses" | "MinChilds" => limits.min_processes = Some(number(name, value)?),
        "MaxProcesses" | "MaxChilds" => limits.max_processes = Some(number(name, value)?),
        "ProcessGroup" => limits.process_group = Some(value.unwrap_or("").to_string()),
        "Encode" => set.encode = Some(value.unwrap_or("encode").to_string()),
        "Decode" => set.decode = Some(value.unwrap_or("decode").to_string()),
        "Timeout" => limits.timeout = Some(number(name, value)?),
        "MaxJobs" => limits.max_jobs = Some(number(name, value)?),
        "MaxLifetime" => limits.max_lifetime = Some(number(name, value)?),
        "MaxRSS" => limits.max_rss = Some(number(name, value)?),
        "StartTimeout" => limits.start_timeout = Some(number(name, value)?),
        _ => return Err(format!("unknown attribute `{name}`; known are {KNOWN}")),
    }
    Ok(())
}

fn number<T: std::str::FromStr>(name: &str, value: Option<&str>) -> Result<T, String> {
    let Some(value) = value else {
        return Err(format!("{name} needs a number, as in {name}(2)"));
    };
    value
        .parse()
        .map_err(|_| format!("{name}({value}): `{value}` is not a whole number >= 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(raw: &[&str]) -> AttrSet {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        let (set, errors) = from_list(&raw);
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    fn hash(pairs: &[(&str, Option<&str>)]) -> AttrSet {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        let (set, errors) = from_hash(&map);
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    #[test]
    fn splits_names_and_values() {
        assert_eq!(split("Job"), ("Job", None));
        assert_eq!(split("MinProcesses(0)"), ("MinProcesses", Some("0")));
        assert_eq!(split("Encode()"), ("Encode", None));
        assert_eq!(
            split("ProcessGroup( 'grp' )"),
            ("ProcessGroup", Some("grp"))
        );
        assert_eq!(
            split("Decode(\"from_yaml\")"),
            ("Decode", Some("from_yaml"))
        );
    }

    #[test]
    fn the_blog_posts_attributes() {
        let set = list(&["Job", "MinProcesses(0)", "MaxProcesses(5)"]);
        assert!(set.job);
        assert_eq!(set.limits.min_processes, Some(0));
        assert_eq!(set.limits.max_processes, Some(5));
        assert_eq!(set.encode, None);
    }

    #[test]
    fn childs_are_the_old_spelling_of_processes() {
        let set = list(&["Job", "MinChilds(2)", "MaxChilds(15)"]);
        assert_eq!(set.limits.min_processes, Some(2));
        assert_eq!(set.limits.max_processes, Some(15));
    }

    #[test]
    fn encode_and_decode_name_their_methods() {
        let set = list(&["Job", "Encode", "Decode"]);
        assert_eq!(set.encode.as_deref(), Some("encode"));
        assert_eq!(set.decode.as_deref(), Some("decode"));
        let set = list(&["Job", "Encode(to_yaml)", "Decode(from_yaml)"]);
        assert_eq!(set.encode.as_deref(), Some("to_yaml"));
        assert_eq!(set.decode.as_deref(), Some("from_yaml"));
    }

    #[test]
    fn process_group_without_a_name_is_the_methods_own() {
        let set = list(&["Job", "ProcessGroup"]);
        assert_eq!(set.group_for("resize").as_deref(), Some("resize"));
        let set = list(&["Job", "ProcessGroup(images)"]);
        assert_eq!(set.group_for("resize").as_deref(), Some("images"));
        assert_eq!(list(&["Job"]).group_for("resize"), None);
    }

    #[test]
    fn driver_limits_as_attributes() {
        let set = list(&[
            "Job",
            "Timeout(30)",
            "MaxJobs(100)",
            "MaxLifetime(3600)",
            "MaxRSS(512)",
            "StartTimeout(90)",
        ]);
        assert_eq!(set.limits.timeout, Some(30));
        assert_eq!(set.limits.max_jobs, Some(100));
        assert_eq!(set.limits.max_lifetime, Some(3600));
        assert_eq!(set.limits.max_rss, Some(512));
        assert_eq!(set.limits.start_timeout, Some(90));
    }

    #[test]
    fn overrides_beat_own_beat_defaults() {
        let defaults = hash(&[("MinProcesses", Some("0")), ("Encode", Some("encode"))]);
        let overrides = hash(&[("MaxProcesses", Some("1"))]);
        let own = list(&["Job", "MinProcesses(3)", "MaxProcesses(20)"]);
        let merged = overrides.or(&own).or(&defaults);
        assert_eq!(merged.limits.min_processes, Some(3));
        assert_eq!(merged.limits.max_processes, Some(1));
        assert_eq!(merged.encode.as_deref(), Some("encode"));
        assert!(merged.job);
    }

    #[test]
    fn job_may_come_from_the_class_hashes() {
        let defaults = hash(&[("Job", None)]);
        let own = list(&["MinProcesses(1)"]);
        assert!(own.or(&defaults).job);
    }

    #[test]
    fn a_later_attribute_wins() {
        let set = list(&["Job", "MaxProcesses(2)", "MaxProcesses(4)"]);
        assert_eq!(set.limits.max_processes, Some(4));
    }

    #[test]
    fn unknown_and_malformed_attributes_are_errors() {
        let raw: Vec<String> = ["Job", "MaxProcess(5)", "MinProcesses(two)", "Timeout"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (_, errors) = from_list(&raw);
        let shown: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.attribute.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert_eq!(shown[0].0, "MaxProcess(5)");
        assert!(shown[0].1.starts_with("unknown attribute `MaxProcess`"));
        assert_eq!(
            shown[1],
            (
                "MinProcesses(two)",
                "MinProcesses(two): `two` is not a whole number >= 0"
            )
        );
        assert_eq!(
            shown[2],
            ("Timeout", "Timeout needs a number, as in Timeout(2)")
        );
    }

    #[test]
    fn hash_errors_show_the_pair() {
        let map = BTreeMap::from([("MaxProcesses".to_string(), Some("lots".to_string()))]);
        let (_, errors) = from_hash(&map);
        assert_eq!(errors[0].attribute, "MaxProcesses => lots");
    }
}
