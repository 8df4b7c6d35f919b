//! Perl worker classes: `.pm` modules below the lib dirs whose class is a
//! `Gearman::Driver::Worker`, as Perl's Gearman::Driver ran them, turned into
//! the same [`Declared`] a worker file becomes. From there on they are jobs
//! like any other.
//!
//! Perl tells what a class is ([`describe`]); the attributes are judged here
//! ([`attributes`]); every process runs the Perl side's runner on the class
//! over the stdio protocol ([`side`] finds it). The runner is handed what it
//! cannot know by itself on its command line: the lib dirs and each job's
//! Encode/Decode methods, so it never parses attributes.

pub mod attributes;
pub mod describe;
pub mod side;

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrors};
use super::isolation::{self, Isolation};
use super::jobs::{
    worker_options_json, Declared, DeclaredJob, FoundFile, JobSpec, JobTableInput, Origin, Skipped,
    Style,
};
use attributes::AttrSet;
use describe::{ModuleFacts, Status};
use side::PerlSide;

/// The worker classes among the Perl modules found, and the modules skipped.
#[derive(Debug, Default)]
pub struct PerlClasses {
    pub declared: Vec<Declared>,
    pub skipped: Vec<Skipped>,
}

/// Describes the modules in one perl and declares the jobs of every worker
/// class among them. A module that does not load is an error naming its file
/// and Perl's message; a module that is no worker class, or one without a
/// `Job` method, is skipped.
pub fn declare_modules(
    found: &[FoundFile],
    input: &JobTableInput,
) -> Result<PerlClasses, ConfigErrors> {
    let side = PerlSide::locate(input.perl_lib).map_err(|msg| {
        let first = found.first().map(|f| f.path.display().to_string());
        let mut err = ConfigError::new(format!(
            "{} is a Perl module, but {msg}",
            first.unwrap_or_default()
        ))
        .at_key("perl_lib");
        if let Some(file) = input.config_file {
            err = err.in_file(file);
        }
        err
    })?;
    let lib: Vec<PathBuf> = input
        .lib
        .iter()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
        .collect();
    let driver_wide = driver_wide_isolation(input.default_user);
    let request = describe::Request {
        servers: input.servers.join(","),
        modules: found
            .iter()
            .map(|f| describe::RequestModule {
                module: f.module.clone(),
                options: serde_json::from_str(&worker_options_json(
                    input.worker_options,
                    &f.module,
                ))
                .unwrap_or_default(),
            })
            .collect(),
    };
    let facts = describe::describe(&side, &lib, &request).map_err(|msg| {
        ConfigError::new(format!(
            "cannot describe the Perl modules: {}",
            one_line(&msg)
        ))
        .in_file(&found[0].path)
    })?;

    let mut classes = PerlClasses::default();
    let mut errors = ConfigErrors::default();
    for (found, facts) in found.iter().zip(&facts) {
        match facts.status {
            Status::Error => errors.push(load_error(found, facts)),
            Status::NotWorker => classes.skipped.push(Skipped {
                module: found.module.clone(),
                reason: facts
                    .reason
                    .clone()
                    .unwrap_or_else(|| "not a worker class".into()),
            }),
            Status::Worker => {
                let options_json = worker_options_json(input.worker_options, &found.module);
                match declare_class(found, facts, &side, &lib, options_json) {
                    Ok(Some(mut decl)) => {
                        decl.template.isolation = driver_wide.clone();
                        classes.declared.push(decl)
                    }
                    Ok(None) => classes.skipped.push(Skipped {
                        module: found.module.clone(),
                        reason: "no method has the Job attribute".into(),
                    }),
                    Err(mut errs) => errors.0.append(&mut errs.0),
                }
            }
        }
    }
    errors.into_result(classes)
}

fn load_error(found: &FoundFile, facts: &ModuleFacts) -> ConfigError {
    let message = one_line(facts.error.as_deref().unwrap_or("unknown error"));
    let shown = if facts.file.is_some() {
        format!("{}: {message}", found.module)
    } else {
        format!("{} does not compile: {message}", found.module)
    };
    let canonical = std::fs::canonicalize(&found.path).unwrap_or_else(|_| found.path.clone());
    let err = ConfigError::new(shown).in_file(&found.path);
    match describe::line_in_message(&message, &canonical) {
        Some(line) => err.at_line(line),
        None => err,
    }
}

/// Perl's messages run over several lines; a config error is one line (the
/// console and the log show it as one).
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Perl classes cannot set `user`, `umask` or `rlimits` themselves; they
/// run as the driver-wide `user`, if any (checked with the driver config).
fn driver_wide_isolation(default_user: Option<&str>) -> Isolation {
    let nothing = std::collections::BTreeMap::new();
    let requested = isolation::Requested {
        user: None,
        group: None,
        umask: None,
        rlimits: &nothing,
    };
    isolation::resolve(&requested, default_user, isolation::Me::current()).0
}

/// The jobs of one worker class, or None if it has no `Job` method.
fn declare_class(
    found: &FoundFile,
    facts: &ModuleFacts,
    side: &PerlSide,
    lib: &[PathBuf],
    options_json: String,
) -> Result<Option<Declared>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let class_hash = |name: &str, hash| {
        let (set, errs) = attributes::from_hash(hash);
        let errs: Vec<ConfigError> = errs
            .into_iter()
            .map(|e| {
                ConfigError::new(format!("{}: {}", e.attribute, e.message))
                    .in_file(&found.path)
                    .at_key(name.to_string())
            })
            .collect();
        (set, errs)
    };
    let (defaults, errs) = class_hash("default_attributes", &facts.default_attributes);
    errors.0.extend(errs);
    let (overrides, errs) = class_hash("override_attributes", &facts.override_attributes);
    errors.0.extend(errs);

    let mut jobs = Vec::new();
    let mut codecs = Vec::new();
    for method in &facts.methods {
        let (own, attr_errors) = attributes::from_list(&method.attributes);
        let merged = overrides.or(&own).or(&defaults);
        // Other methods may carry attributes for other purposes: not ours to judge.
        if !merged.job {
            continue;
        }
        let file = method.file.clone().unwrap_or_else(|| found.path.clone());
        let at_sub = |attribute: &str, message: String| {
            let err = ConfigError::new(message)
                .in_file(&file)
                .at_key(format!("sub {} : {attribute}", method.name));
            match method.line {
                Some(line) => err.at_line(line),
                None => err,
            }
        };
        for e in attr_errors {
            errors.push(at_sub(&e.attribute, e.message));
        }
        for (flag, attribute, codec) in [
            ("--encode", "Encode", &merged.encode),
            ("--decode", "Decode", &merged.decode),
        ] {
            let Some(codec) = codec else { continue };
            if !facts.can.contains(codec) {
                errors.push(at_sub(
                    attribute,
                    format!(
                        "{attribute} calls method `{codec}`, which {} does not have",
                        found.module
                    ),
                ));
            }
            codecs.push(flag.to_string());
            codecs.push(format!("{}={codec}", method.name));
        }
        jobs.push(declared_job(method, &merged, own, file));
    }
    if jobs.is_empty() {
        return errors.into_result(None);
    }
    let template = template(found, facts, side, lib, codecs, options_json);
    // Process groups are resolved per method above (a nameless one is the
    // method's own); the class-wide hashes keep only the limits.
    let limits_only = |set: AttrSet| {
        let mut limits = set.limits;
        limits.process_group = None;
        limits
    };
    let decl = Declared {
        template,
        style: Style::PerlClass,
        defaults: limits_only(defaults),
        overrides: limits_only(overrides),
        jobs,
    };
    errors.into_result(Some(decl))
}

fn declared_job(
    method: &describe::MethodFacts,
    merged: &AttrSet,
    own: AttrSet,
    file: PathBuf,
) -> DeclaredJob {
    let mut attrs = own.limits;
    attrs.process_group = merged.group_for(&method.name);
    DeclaredJob {
        key: method.name.clone(),
        attrs,
        at: Origin::Sub {
            file,
            line: method.line,
        },
    }
}

/// What every job of the class shares: the runner as its command.
fn template(
    found: &FoundFile,
    facts: &ModuleFacts,
    side: &PerlSide,
    lib: &[PathBuf],
    codecs: Vec<String>,
    options_json: String,
) -> JobSpec {
    let mut command = vec![
        side.perl.to_string_lossy().into_owned(),
        side.runner.to_string_lossy().into_owned(),
    ];
    for dir in lib {
        command.push("--lib".into());
        command.push(dir.to_string_lossy().into_owned());
    }
    command.extend(codecs);
    command.push(found.module.clone());
    let dir = found
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    JobSpec {
        prefix: facts
            .prefix
            .clone()
            .unwrap_or_else(|| format!("{}::", found.module)),
        options_json,
        code_digest: facts.digest.clone(),
        ..JobSpec::template(&found.module, found.path.clone(), dir, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::jobs::{build_jobs, FileKind};
    use crate::config::Protocol;
    use describe::MethodFacts;
    use std::collections::BTreeMap;

    fn method(name: &str, attributes: &[&str]) -> MethodFacts {
        MethodFacts {
            name: name.into(),
            attributes: attributes.iter().map(|a| a.to_string()).collect(),
            file: Some(PathBuf::from("/lib/My/W.pm")),
            line: Some(7),
        }
    }

    fn facts(methods: Vec<MethodFacts>) -> ModuleFacts {
        ModuleFacts {
            module: "My::W".into(),
            status: Status::Worker,
            error: None,
            reason: None,
            file: Some(PathBuf::from("/lib/My/W.pm")),
            prefix: Some("My::W::".into()),
            default_attributes: BTreeMap::new(),
            override_attributes: BTreeMap::new(),
            methods,
            can: ["encode", "decode", "to_yaml"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            digest: Some("d1".into()),
        }
    }

    fn declare(facts: &ModuleFacts) -> Result<Option<Declared>, ConfigErrors> {
        let found = FoundFile {
            path: PathBuf::from("/lib/My/W.pm"),
            module: "My::W".into(),
            kind: FileKind::PerlModule,
        };
        let side = PerlSide {
            perl: PathBuf::from("/usr/bin/perl"),
            runner: PathBuf::from("/p/gearman-driver-perl"),
        };
        declare_class(&found, facts, &side, &[PathBuf::from("/lib")], "{}".into())
    }

    #[test]
    fn jobs_groups_and_codecs_of_a_class() {
        let mut f = facts(vec![
            method("a", &["Job", "ProcessGroup(g)", "MaxProcesses(3)"]),
            method("b", &["Job", "ProcessGroup(g)", "Encode(to_yaml)"]),
            method("c", &["Job", "Decode"]),
            method("not_a_job", &["Local"]),
        ]);
        f.default_attributes
            .insert("MinProcesses".into(), Some("0".into()));
        let decl = declare(&f).unwrap().unwrap();
        let jobs = build_jobs(&decl).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["My::W::c", "My::W::g"]);
        assert_eq!((jobs[1].min_processes, jobs[1].max_processes), (0, 3));
        assert_eq!(jobs[1].function_names(), ["My::W::a", "My::W::b"]);
        assert_eq!((jobs[0].min_processes, jobs[0].max_processes), (0, 1));
        assert_eq!(
            jobs[0].command,
            [
                "/usr/bin/perl",
                "/p/gearman-driver-perl",
                "--lib",
                "/lib",
                "--encode",
                "b=to_yaml",
                "--decode",
                "c=decode",
                "My::W"
            ]
        );
        assert_eq!(jobs[0].protocol, Protocol::Stdio);
        assert_eq!(jobs[0].code_digest.as_deref(), Some("d1"));
    }

    #[test]
    fn override_attributes_can_make_every_attributed_method_a_job() {
        let mut f = facts(vec![method("x", &["MinProcesses(2)"])]);
        f.override_attributes.insert("Job".into(), None);
        let decl = declare(&f).unwrap().unwrap();
        assert_eq!(decl.jobs[0].key, "x");
    }

    #[test]
    fn a_class_without_jobs_is_skipped() {
        let f = facts(vec![method("x", &["Local"])]);
        assert!(declare(&f).unwrap().is_none());
    }

    #[test]
    fn a_nameless_process_group_is_the_methods_own() {
        let mut f = facts(vec![method("x", &["Job"]), method("y", &["Job"])]);
        f.default_attributes.insert("ProcessGroup".into(), None);
        let jobs = build_jobs(&declare(&f).unwrap().unwrap()).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["My::W::x", "My::W::y"]);
    }

    #[test]
    fn errors_name_the_sub_and_its_line() {
        let f = facts(vec![method("x", &["Job", "Decode(from_xml)"])]);
        let errs = declare(&f).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "error: /lib/My/W.pm:7:1: key `sub x : Decode`: Decode calls method `from_xml`, which My::W does not have"
        );
    }

    #[test]
    fn perls_messages_become_one_line() {
        assert_eq!(
            one_line("syntax error at X line 4, near \"= ;\"\n  \nX had compilation errors.\n"),
            "syntax error at X line 4, near \"= ;\"; X had compilation errors."
        );
    }
}
