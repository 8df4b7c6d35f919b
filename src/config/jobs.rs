//! From namespaces to the job table: finds worker files (and Perl worker
//! classes, see [`super::perl`]) below the lib dirs, names their modules,
//! applies defaults/overrides/process groups and runtime attributes, resolves
//! commands, and validates everything the SPEC lists.
//!
//! Worker files and Perl classes meet in [`Declared`]: what one module
//! declares, before process groups, defaults and overrides are applied. From
//! there on both are built by the same code, so both follow the same rules.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::driver_file::RuntimeAttrs;
use super::error::{ConfigError, ConfigErrors};
use super::http_worker::{self, HttpEndpoint};
use super::isolation::{self, Isolation};
use super::stop_signal::{parse_stop_signal, DEFAULT_STOP_SIGNAL};
use super::worker_file::{CommandSpec, JobAttrs, Protocol, WorkerFile};

/// One registered Gearman function of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The key as declared in the worker file (`convert_to_jpeg`); the name the
    /// stdio protocol's `JOB` header carries.
    pub key: String,
    /// The registered name (`GDExamples::Convert::convert_to_jpeg`).
    pub function: String,
    /// Longest a single job may run.
    pub timeout: Option<Duration>,
}

/// A job: one function, or a process group of functions served by the same
/// processes. The unit the supervisor scales and the console lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The console name: `<prefix><job key or group>`.
    pub name: String,
    pub module: String,
    pub prefix: String,
    pub file: PathBuf,
    /// The worker file's folder: the working directory of every process.
    pub dir: PathBuf,
    /// argv with the program resolved to a path.
    pub command: Vec<String>,
    pub protocol: Protocol,
    /// `http` jobs: where their slots send jobs (their `command` is empty).
    pub endpoint: Option<HttpEndpoint>,
    /// Asks a process to stop (see [`super::stop_signal`]).
    pub stop_signal: nix::sys::signal::Signal,
    pub env: BTreeMap<String, String>,
    pub functions: Vec<FunctionSpec>,
    pub min_processes: u32,
    pub max_processes: u32,
    pub max_jobs: u64,
    pub max_lifetime: Option<Duration>,
    pub max_rss_mib: u64,
    pub start_timeout: Duration,
    /// `GEARMAN_DRIVER_OPTIONS`: GLOBAL merged under the module's own options.
    pub options_json: String,
    /// User, group, umask and resource limits of the processes.
    pub isolation: Isolation,
    /// Perl classes: a digest of the class's source (and its ancestors' in
    /// the lib dirs), so that a reload replaces the processes of edited code.
    pub code_digest: Option<String>,
}

impl JobSpec {
    /// What every job declared by `module` (in `file`, whose folder is
    /// `dir`) starts from before its own keys apply: the built-in defaults.
    pub fn template(module: &str, file: PathBuf, dir: PathBuf, command: Vec<String>) -> JobSpec {
        JobSpec {
            name: String::new(),
            module: module.to_string(),
            prefix: format!("{module}::"),
            file,
            dir,
            command,
            protocol: Protocol::Stdio,
            endpoint: None,
            stop_signal: super::stop_signal::DEFAULT_STOP_SIGNAL,
            env: BTreeMap::new(),
            functions: Vec::new(),
            min_processes: 1,
            max_processes: 1,
            max_jobs: 0,
            max_lifetime: None,
            max_rss_mib: 0,
            start_timeout: Duration::from_secs(DEFAULT_START_TIMEOUT),
            options_json: "{}".into(),
            isolation: Isolation::default(),
            code_digest: None,
        }
    }

    /// A job of one function `<name>` (`M::f` serves `M::f`), for unit tests
    /// that need a spec but no worker file.
    #[cfg(test)]
    pub fn for_test(name: &str, protocol: Protocol) -> JobSpec {
        let (module, key) = name.rsplit_once("::").map_or(("", name), |(p, k)| (p, k));
        let command = vec!["/bin/cat".into()];
        JobSpec {
            name: name.into(),
            protocol,
            functions: vec![FunctionSpec {
                key: key.into(),
                function: name.into(),
                timeout: None,
            }],
            min_processes: 0,
            ..JobSpec::template(module, format!("{module}.toml").into(), "/".into(), command)
        }
    }

    pub fn function_names(&self) -> Vec<&str> {
        self.functions.iter().map(|f| f.function.as_str()).collect()
    }

    /// The function declared under `function`, by registered name.
    pub fn function(&self, function: &[u8]) -> Option<&FunctionSpec> {
        self.functions
            .iter()
            .find(|f| f.function.as_bytes() == function)
    }

    /// Whether a change to this spec needs new processes (anything but the
    /// process counts, which apply live).
    pub fn same_processes(&self, other: &JobSpec) -> bool {
        let mut a = self.clone();
        a.min_processes = other.min_processes;
        a.max_processes = other.max_processes;
        &a == other
    }
}

pub(crate) const DEFAULT_START_TIMEOUT: u64 = 60;

/// Inputs to building the job table, already taken from the driver config.
pub struct JobTableInput<'a> {
    pub lib: &'a [PathBuf],
    pub namespaces: &'a [String],
    pub worker_options: &'a BTreeMap<String, toml::Table>,
    pub runtime_attributes: &'a BTreeMap<String, RuntimeAttrs>,
    /// The driver config file, to name it in errors about runtime attributes.
    pub config_file: Option<&'a Path>,
    /// The driver-wide `user`, for worker files that set neither `user` nor `group`.
    pub default_user: Option<&'a str>,
    /// `host:port` of every gearmand: Perl worker objects get them as `server`.
    pub servers: &'a [String],
    /// `perl_lib`: where the Perl side of the driver is, if not found by itself.
    pub perl_lib: Option<&'a Path>,
}

/// A worker file or Perl module found below a lib dir, and its module name.
#[derive(Debug, Clone)]
pub struct FoundFile {
    pub path: PathBuf,
    pub module: String,
    pub kind: FileKind,
}

/// What a found file is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.toml`: a worker file.
    WorkerFile,
    /// `.pm`: a Perl module, a worker class if it is a `Gearman::Driver::Worker`.
    PerlModule,
}

impl FileKind {
    fn of(path: &Path) -> Option<FileKind> {
        match path.extension()?.to_str()? {
            "toml" => Some(FileKind::WorkerFile),
            "pm" => Some(FileKind::PerlModule),
            _ => None,
        }
    }
}

/// Builds the job table, sorted by console name, or every error found.
pub fn build_job_table(input: &JobTableInput) -> Result<Vec<Arc<JobSpec>>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let files = discover(input.lib, input.namespaces)?;
    let (worker_files, perl_modules): (Vec<FoundFile>, Vec<FoundFile>) = files
        .into_iter()
        .partition(|f| f.kind == FileKind::WorkerFile);
    let mut declared = Vec::new();
    for found in &worker_files {
        let (decl, mut errs) = load_worker_file(found, input);
        errors.0.append(&mut errs.0);
        declared.extend(decl);
    }
    let mut skipped = Vec::new();
    if !perl_modules.is_empty() {
        match super::perl::declare_modules(&perl_modules, input) {
            Ok(mut classes) => {
                declared.append(&mut classes.declared);
                skipped = classes.skipped;
            }
            Err(mut errs) => errors.0.append(&mut errs.0),
        }
    }
    let mut jobs = Vec::new();
    for decl in &declared {
        match build_jobs(decl) {
            Ok(mut built) => jobs.append(&mut built),
            Err(mut errs) => errors.0.append(&mut errs.0),
        }
    }
    check_namespaces_serve_something(input.namespaces, &declared, &skipped, &mut errors);
    check_duplicate_functions(&jobs, &mut errors);
    apply_runtime_attributes(&mut jobs, input, &mut errors);
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    errors.into_result(jobs.into_iter().map(Arc::new).collect())
}

/// Finds every worker file and Perl module the namespaces select. The first
/// lib dir that holds a module wins, as Perl's @INC would; a worker file and
/// a Perl module of the same name are an error (which one was meant?).
pub fn discover(lib: &[PathBuf], namespaces: &[String]) -> Result<Vec<FoundFile>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    for dir in lib {
        if !dir.is_dir() {
            errors.push(
                ConfigError::new(format!("lib dir {} does not exist", dir.display())).at_key("lib"),
            );
        }
    }
    if namespaces.is_empty() {
        errors.push(
            ConfigError::new(
                "no namespaces given: set `namespaces` in the config or pass --namespaces",
            )
            .at_key("namespaces"),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut by_module: BTreeMap<String, FoundFile> = BTreeMap::new();
    let mut clashes: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
    for ns in namespaces {
        if !is_valid_namespace(ns) {
            errors.push(ConfigError::new(format!("invalid namespace `{ns}`")).at_key("namespaces"));
            continue;
        }
        let rel = ns.replace("::", "/");
        let mut selected = 0;
        for dir in lib {
            let mut found = Vec::new();
            for ext in ["toml", "pm"] {
                let single = dir.join(format!("{rel}.{ext}"));
                if single.is_file() {
                    found.push(single);
                }
            }
            let folder = dir.join(&rel);
            if folder.is_dir() {
                collect_module_files(&folder, &mut found);
            }
            for path in found {
                let Some(kind) = FileKind::of(&path) else {
                    continue;
                };
                let module = module_name(dir, &path);
                selected += 1;
                match by_module.get(&module) {
                    Some(first) if first.kind != kind => {
                        clashes
                            .entry(module.clone())
                            .or_insert_with(|| (first.path.clone(), path.clone()));
                    }
                    Some(_) => {}
                    None => {
                        by_module.insert(module.clone(), FoundFile { path, module, kind });
                    }
                }
            }
        }
        if selected == 0 {
            let dirs: Vec<String> = lib.iter().map(|d| d.display().to_string()).collect();
            errors.push(
                ConfigError::new(format!(
                    "namespace `{ns}` selects no worker file (looked for {rel}.toml, {rel}.pm and {rel}/ in {})",
                    dirs.join(", ")
                ))
                .at_key("namespaces"),
            );
        }
    }
    for (module, (first, second)) in clashes {
        errors.push(
            ConfigError::new(format!(
                "module {module} is both {} and {}: a worker file and a Perl module may not share a name; rename or remove one",
                first.display(),
                second.display()
            ))
            .in_file(&second),
        );
    }
    errors.into_result(by_module.into_values().collect())
}

fn is_valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.split("::").all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
}

fn collect_module_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_module_files(&path, out);
        } else if FileKind::of(&path).is_some() {
            out.push(path);
        }
    }
}

/// `workers/GDExamples/Convert.toml` below `workers` is `GDExamples::Convert`.
pub fn module_name(lib: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(lib).unwrap_or(file).with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("::")
}

/// A Perl module a namespace selected that turned out not to be a worker
/// class (as Gearman::Driver's loader did, it is skipped).
#[derive(Debug, Clone)]
pub struct Skipped {
    pub module: String,
    pub reason: String,
}

/// A namespace whose every module was skipped serves nothing: an error, as a
/// namespace selecting no file is.
fn check_namespaces_serve_something(
    namespaces: &[String],
    declared: &[Declared],
    skipped: &[Skipped],
    errors: &mut ConfigErrors,
) {
    let within = |module: &str, ns: &str| {
        module == ns
            || module
                .strip_prefix(ns)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    for ns in namespaces {
        let serves = declared.iter().any(|d| within(&d.template.module, ns));
        let passed_over: Vec<String> = skipped
            .iter()
            .filter(|s| within(&s.module, ns))
            .map(|s| format!("{} ({})", s.module, s.reason))
            .collect();
        if !serves && !passed_over.is_empty() {
            errors.push(
                ConfigError::new(format!(
                    "namespace `{ns}` selects no worker: {}",
                    passed_over.join(", ")
                ))
                .at_key("namespaces"),
            );
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// What one worker file or Perl class declares: the parts every job of it
/// shares (`template`), its defaults and overrides, and its jobs with their
/// own attributes.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Every field a job shares with the other jobs of its module; the
    /// per-job fields (name, functions, limits) are filled in by [`build_jobs`].
    pub template: JobSpec,
    pub style: Style,
    pub defaults: JobAttrs,
    pub overrides: JobAttrs,
    pub jobs: Vec<DeclaredJob>,
}

/// How errors name the place of a problem: TOML keys, or Perl subs and attributes.
#[derive(Debug, Clone)]
pub enum Style {
    WorkerFile { source: String },
    PerlClass,
}

/// One job as declared, with its own attributes only.
#[derive(Debug, Clone)]
pub struct DeclaredJob {
    pub key: String,
    pub attrs: JobAttrs,
    pub at: Origin,
}

/// Where a job is declared.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A byte offset into the worker file's source.
    Offset(usize),
    /// The file and line of a Perl `sub`.
    Sub { file: PathBuf, line: Option<usize> },
}

/// The attributes [`build_jobs`] checks, for naming them in errors.
#[derive(Debug, Clone, Copy)]
enum Field {
    MinProcesses,
    MaxProcesses,
    ProcessGroup,
}

impl Declared {
    fn field_name(&self, field: Field) -> &'static str {
        match (&self.style, field) {
            (Style::WorkerFile { .. }, Field::MinProcesses) => "min_processes",
            (Style::WorkerFile { .. }, Field::MaxProcesses) => "max_processes",
            (Style::WorkerFile { .. }, Field::ProcessGroup) => "process_group",
            (Style::PerlClass, Field::MinProcesses) => "MinProcesses",
            (Style::PerlClass, Field::MaxProcesses) => "MaxProcesses",
            (Style::PerlClass, Field::ProcessGroup) => "ProcessGroup",
        }
    }

    /// An error about `job` (and one of its attributes), placed as precisely
    /// as the declaration allows.
    fn error(&self, job: &DeclaredJob, field: Option<Field>, message: String) -> ConfigError {
        let field = field.map(|f| self.field_name(f));
        match (&self.style, &job.at) {
            (Style::WorkerFile { source }, Origin::Offset(offset)) => {
                let key = match field {
                    Some(f) => format!("jobs.{}.{f}", job.key),
                    None => format!("jobs.{}", job.key),
                };
                ConfigError::new(message)
                    .in_file(&self.template.file)
                    .at_key(key)
                    .at_offset(source, *offset)
            }
            (_, Origin::Sub { file, line }) => {
                let key = match field {
                    Some(f) => format!("sub {} : {f}", job.key),
                    None => format!("sub {}", job.key),
                };
                let err = ConfigError::new(message).in_file(file).at_key(key);
                match line {
                    Some(line) => err.at_line(*line),
                    None => err,
                }
            }
            (Style::PerlClass, Origin::Offset(_)) => ConfigError::new(message)
                .in_file(&self.template.file)
                .at_key(job.key.clone()),
        }
    }
}

/// Reads a worker file into what it declares, with the problems found so
/// far (what it declares is still checked further when it could be read).
fn load_worker_file(found: &FoundFile, input: &JobTableInput) -> (Option<Declared>, ConfigErrors) {
    let path = &found.path;
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(e) => {
            let err = ConfigError::new(format!("cannot read worker file: {e}")).in_file(path);
            return (None, err.into());
        }
    };
    let wf = match WorkerFile::parse(path, &source) {
        Ok(wf) => wf,
        Err(err) => return (None, err.into()),
    };
    let mut errors = ConfigErrors::default();
    // Absolute, because processes start in it and a relative program path
    // would then be looked up from there.
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let err_at = |key: String, offset: usize, msg: String| {
        ConfigError::new(msg)
            .in_file(path)
            .at_key(key)
            .at_offset(&source, offset)
    };

    let endpoint = http_worker::check(&wf, path, &source, &mut errors);
    let command = match &wf.command {
        Some(command) if wf.protocol != Protocol::Http => {
            match resolve_command(command.get_ref(), &dir) {
                Ok(argv) => argv,
                Err(msg) => {
                    errors.push(err_at("command".into(), command.span().start, msg));
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };
    let (isolation, problems) = isolation::resolve(
        &isolation::Requested {
            user: wf.user.as_ref(),
            group: wf.group.as_ref(),
            umask: wf.umask.as_ref(),
            rlimits: &wf.rlimits,
        },
        input.default_user,
        isolation::Me::current(),
    );
    // An http file's isolation keys are errors of their own (no process).
    if wf.protocol != Protocol::Http {
        for (key, offset, msg) in problems {
            errors.push(err_at(key, offset, msg));
        }
    }
    let stop_signal = stop_signal_of(&wf, &mut |offset, msg| {
        errors.push(err_at("stop_signal".into(), offset, msg))
    });
    if wf.jobs.is_empty() {
        errors.push(
            ConfigError::new("declares no [jobs.<name>] table")
                .in_file(path)
                .at_key("jobs"),
        );
    }
    let prefix = wf
        .prefix
        .clone()
        .unwrap_or_else(|| format!("{}::", found.module));
    let template = JobSpec {
        prefix,
        protocol: wf.protocol,
        endpoint,
        stop_signal,
        env: wf.env.clone(),
        options_json: worker_options_json(input.worker_options, &found.module),
        isolation,
        ..JobSpec::template(&found.module, path.clone(), dir, command)
    };
    let jobs = wf
        .jobs
        .iter()
        .map(|(key, attrs)| DeclaredJob {
            key: key.clone(),
            attrs: attrs.get_ref().clone(),
            at: Origin::Offset(attrs.span().start),
        })
        .collect();
    let decl = Declared {
        template,
        style: Style::WorkerFile { source },
        defaults: wf.defaults,
        overrides: wf.overrides,
        jobs,
    };
    (Some(decl), errors)
}

/// The jobs of one module: process groups formed, defaults and overrides
/// applied, limits checked.
pub fn build_jobs(decl: &Declared) -> Result<Vec<JobSpec>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let prefix = &decl.template.prefix;

    // Group jobs by process group (or alone), keeping declaration order.
    let mut groups: BTreeMap<String, Vec<&DeclaredJob>> = BTreeMap::new();
    for job in &decl.jobs {
        if !is_valid_name(&job.key) {
            errors.push(decl.error(
                job,
                None,
                "job names may hold only A-Z a-z 0-9 _ . : -".into(),
            ));
            continue;
        }
        let merged = decl.overrides.or(&job.attrs).or(&decl.defaults);
        let group = match &merged.process_group {
            Some(g) if !is_valid_name(g) => {
                errors.push(decl.error(
                    job,
                    Some(Field::ProcessGroup),
                    "group names may hold only A-Z a-z 0-9 _ . : -".into(),
                ));
                continue;
            }
            Some(g) => g.clone(),
            None => job.key.clone(),
        };
        groups.entry(group).or_default().push(job);
    }

    let mut jobs = Vec::new();
    for (group, members) in groups {
        let grouped = members.len() > 1
            || members[0].attrs.process_group.is_some()
            || decl.overrides.process_group.is_some()
            || decl.defaults.process_group.is_some();
        for field in [Field::MinProcesses, Field::MaxProcesses] {
            let setters: Vec<&&DeclaredJob> = members
                .iter()
                .filter(|j| match field {
                    Field::MinProcesses => j.attrs.min_processes.is_some(),
                    _ => j.attrs.max_processes.is_some(),
                })
                .collect();
            if grouped && setters.len() > 1 {
                let names: Vec<&str> = setters.iter().map(|j| j.key.as_str()).collect();
                let name = decl.field_name(field);
                errors.push(decl.error(
                    setters[1],
                    Some(field),
                    format!("{name} is set twice in process group `{group}` (by {}); set it on one member only", names.join(" and ")),
                ));
            }
        }
        // The group's per-process attributes: a member's own value, first by name.
        let own = members
            .iter()
            .fold(JobAttrs::default(), |acc, j| acc.or(&j.attrs));
        let attrs = decl.overrides.or(&own).or(&decl.defaults);
        let min = attrs.min_processes.unwrap_or(1);
        let max = attrs.max_processes.unwrap_or(1);
        let first = members[0];
        if min > max {
            errors.push(decl.error(
                first,
                Some(Field::MinProcesses),
                format!(
                    "{} ({min}) is greater than {} ({max})",
                    decl.field_name(Field::MinProcesses),
                    decl.field_name(Field::MaxProcesses)
                ),
            ));
        }
        let functions = members
            .iter()
            .map(|j| {
                let a = decl.overrides.or(&j.attrs).or(&decl.defaults);
                FunctionSpec {
                    key: j.key.clone(),
                    function: format!("{prefix}{}", j.key),
                    timeout: a.timeout.filter(|t| *t > 0).map(Duration::from_secs),
                }
            })
            .collect();
        let name = if grouped {
            format!("{prefix}{group}")
        } else {
            format!("{prefix}{}", first.key)
        };
        jobs.push(JobSpec {
            name,
            functions,
            min_processes: min,
            max_processes: max,
            max_jobs: attrs.max_jobs.unwrap_or(0),
            max_lifetime: attrs
                .max_lifetime
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            max_rss_mib: attrs.max_rss.unwrap_or(0),
            start_timeout: Duration::from_secs(
                attrs
                    .start_timeout
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_START_TIMEOUT),
            ),
            ..decl.template.clone()
        });
    }
    errors.into_result(jobs)
}

/// The worker file's `stop_signal`, or the default. `exec` slots are the
/// driver's own helper, stopped by closing their stdin: a signal there would
/// only reach the command of a job in flight, so the key is refused.
fn stop_signal_of(
    wf: &WorkerFile,
    error: &mut dyn FnMut(usize, String),
) -> nix::sys::signal::Signal {
    let Some(name) = &wf.stop_signal else {
        return DEFAULT_STOP_SIGNAL;
    };
    let offset = name.span().start;
    if wf.protocol == Protocol::Http {
        // Refused with the other process-only keys (config::http_worker).
        return DEFAULT_STOP_SIGNAL;
    }
    if wf.protocol == Protocol::Exec {
        error(
            offset,
            "stop_signal does not apply to protocol = \"exec\": its slots stop when their stdin \
             closes, after the job in flight; remove the key"
                .into(),
        );
        return DEFAULT_STOP_SIGNAL;
    }
    parse_stop_signal(name.get_ref()).unwrap_or_else(|msg| {
        error(offset, msg);
        DEFAULT_STOP_SIGNAL
    })
}

/// The argv of a command, its program resolved.
fn resolve_command(command: &CommandSpec, dir: &Path) -> Result<Vec<String>, String> {
    let mut argv = command.to_argv()?;
    if let Some(i) = argv.iter().position(|arg| arg.contains('\0')) {
        // execve takes C strings: the process could never be started.
        return Err(format!(
            "command word {} holds a NUL byte (\\u0000), which no program can be given",
            i + 1
        ));
    }
    argv[0] = resolve_program(&argv[0], dir)?
        .to_string_lossy()
        .into_owned();
    Ok(argv)
}

/// A program with a slash is relative to the worker file's folder; a bare
/// name is looked up on PATH. Either way it must exist and be executable.
pub fn resolve_program(program: &str, dir: &Path) -> Result<PathBuf, String> {
    if program.contains('/') {
        // components() drops the `.` in `dir/./worker`.
        let path: PathBuf = dir.join(program).components().collect();
        return check_executable(&path).map(|_| path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for entry in std::env::split_paths(&path_var) {
        let candidate = entry.join(program);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!("command `{program}` was not found on PATH"))
}

fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|_| format!("command `{}` does not exist", path.display()))?;
    if !meta.is_file() {
        return Err(format!("command `{}` is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "command `{}` is not executable (chmod +x it)",
            path.display()
        ));
    }
    Ok(())
}

pub(crate) fn worker_options_json(options: &BTreeMap<String, toml::Table>, module: &str) -> String {
    let mut merged = options.get("GLOBAL").cloned().unwrap_or_default();
    if let Some(own) = options.get(module) {
        for (k, v) in own {
            merged.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_string(&merged).unwrap_or_else(|_| "{}".into())
}

fn check_duplicate_functions(jobs: &[JobSpec], errors: &mut ConfigErrors) {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for job in jobs {
        for f in &job.functions {
            if let Some(other) = seen.insert(&f.function, &job.file) {
                errors.push(
                    ConfigError::new(format!(
                        "function `{}` is registered twice: here and in {}",
                        f.function,
                        other.display()
                    ))
                    .in_file(&job.file)
                    .at_key(format!("jobs.{}", f.key)),
                );
            }
        }
    }
}

fn apply_runtime_attributes(
    jobs: &mut [JobSpec],
    input: &JobTableInput,
    errors: &mut ConfigErrors,
) {
    for (name, attrs) in input.runtime_attributes {
        let Some(job) = jobs.iter_mut().find(|j| &j.name == name) else {
            tracing::warn!(
                "job_runtime_attributes names `{name}`, which no loaded worker file declares"
            );
            continue;
        };
        let min = attrs.min_processes.unwrap_or(job.min_processes);
        let max = attrs.max_processes.unwrap_or(job.max_processes);
        if min > max {
            let mut err = ConfigError::new(format!(
                "min_processes ({min}) is greater than max_processes ({max}) for job `{name}`"
            ))
            .at_key(format!("job_runtime_attributes.\"{name}\""));
            if let Some(file) = input.config_file {
                err = err.in_file(file);
            }
            errors.push(err);
            continue;
        }
        job.min_processes = min;
        job.max_processes = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, rel: &str, body: &str) -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, body).unwrap();
        path
    }

    fn table(lib: &Path, ns: &[&str]) -> Result<Vec<Arc<JobSpec>>, ConfigErrors> {
        let namespaces: Vec<String> = ns.iter().map(|s| s.to_string()).collect();
        let lib = vec![lib.to_path_buf()];
        let opts = BTreeMap::new();
        let rt = BTreeMap::new();
        build_job_table(&JobTableInput {
            lib: &lib,
            namespaces: &namespaces,
            worker_options: &opts,
            runtime_attributes: &rt,
            config_file: None,
            default_user: None,
            servers: &[],
            perl_lib: None,
        })
    }

    #[test]
    fn module_names_come_from_paths() {
        assert_eq!(
            module_name(
                Path::new("workers"),
                Path::new("workers/GDExamples/Convert.toml")
            ),
            "GDExamples::Convert"
        );
    }

    #[test]
    fn namespace_selects_recursively_and_the_file_itself() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "NS/A.toml",
            "command = \"/bin/cat\"\n[jobs.a]\n",
        );
        write(
            tmp.path(),
            "NS/Sub/B.toml",
            "command = \"/bin/cat\"\n[jobs.b]\n",
        );
        write(tmp.path(), "NS.toml", "command = \"/bin/cat\"\n[jobs.c]\n");
        write(
            tmp.path(),
            "Other/C.toml",
            "command = \"/bin/cat\"\n[jobs.d]\n",
        );
        let jobs = table(tmp.path(), &["NS"]).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, vec!["NS::A::a", "NS::Sub::B::b", "NS::c"]);
    }

    #[test]
    fn defaults_overrides_and_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "NS/W.toml",
            "command = \"/bin/cat\"\nprefix = \"\"\n[defaults]\nmin_processes = 0\nmax_processes = 3\n[overrides]\nmax_processes = 7\n[jobs.a]\n[jobs.b]\nmin_processes = 2\n",
        );
        let jobs = table(tmp.path(), &["NS"]).unwrap();
        assert_eq!(jobs[0].name, "a");
        assert_eq!((jobs[0].min_processes, jobs[0].max_processes), (0, 7));
        assert_eq!((jobs[1].min_processes, jobs[1].max_processes), (2, 7));
    }

    #[test]
    fn process_group_is_one_job() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "NS/W.toml",
            "command = \"/bin/cat\"\n[jobs.a]\nprocess_group = \"g\"\nmax_processes = 4\n[jobs.b]\nprocess_group = \"g\"\n[jobs.c]\n",
        );
        let jobs = table(tmp.path(), &["NS"]).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, vec!["NS::W::c", "NS::W::g"]);
        assert_eq!(jobs[1].functions.len(), 2);
        assert_eq!(jobs[1].max_processes, 4);
    }

    #[test]
    fn every_validation_names_file_and_key() {
        let cases: &[(&str, &str)] = &[
            ("command = \"/bin/cat\"\n[jobs.a]\nbogus = 1\n", "bogus"),
            ("command = \"/bin/cat\"\n[jobs.a]\nmin_processes = \"x\"\n", "min_processes"),
            ("command = \"/bin/cat\"\n[jobs.a]\nmin_processes = 3\nmax_processes = 2\n", "jobs.a.min_processes"),
            ("command = \"./nope\"\n[jobs.a]\n", "command"),
            ("command = \"./not-executable.txt\"\n[jobs.a]\n", "command"),
            ("command = \"/bin/cat\"\n[jobs.a]\nprocess_group = \"g\"\nmin_processes = 1\n[jobs.b]\nprocess_group = \"g\"\nmin_processes = 1\n", "jobs.b.min_processes"),
            ("command = \"/bin/cat\"\n[jobs.\"a b\"]\n", "jobs.a b"),
            ("command = \"/bin/cat\"\nuser = \"no-such-user-xyz\"\n[jobs.a]\n", "user"),
            ("command = \"/bin/cat\"\ngroup = \"no-such-group-xyz\"\n[jobs.a]\n", "group"),
            ("command = \"/bin/cat\"\numask = 27\n[jobs.a]\n", "umask"),
            ("command = \"/bin/cat\"\nrlimits = { nofiles = 1 }\n[jobs.a]\n", "rlimits.nofiles"),
        ];
        for (body, key) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let path = write(tmp.path(), "NS/W.toml", body);
            write(tmp.path(), "NS/not-executable.txt", "data");
            let errs = table(tmp.path(), &["NS"]).unwrap_err();
            let err = &errs.0[0];
            assert_eq!(err.file.as_deref(), Some(path.as_path()), "{body}");
            let shown = err.to_string();
            assert!(shown.contains(key), "{shown} should name {key}");
        }
    }

    #[test]
    fn duplicate_function_across_files() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "NS/A.toml",
            "command = \"/bin/cat\"\nprefix = \"x::\"\n[jobs.a]\n",
        );
        write(
            tmp.path(),
            "NS/B.toml",
            "command = \"/bin/cat\"\nprefix = \"x::\"\n[jobs.a]\n",
        );
        let errs = table(tmp.path(), &["NS"]).unwrap_err();
        assert!(errs.to_string().contains("registered twice"), "{errs}");
    }

    #[test]
    fn perl_modules_are_found_beside_worker_files() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "NS/A.toml", "");
        write(tmp.path(), "NS/Sub/B.pm", "");
        write(tmp.path(), "NS.pm", "");
        write(tmp.path(), "NS/notes.txt", "");
        let found = discover(&[tmp.path().to_path_buf()], &["NS".into()]).unwrap();
        let seen: Vec<(&str, FileKind)> =
            found.iter().map(|f| (f.module.as_str(), f.kind)).collect();
        assert_eq!(
            seen,
            [
                ("NS", FileKind::PerlModule),
                ("NS::A", FileKind::WorkerFile),
                ("NS::Sub::B", FileKind::PerlModule)
            ]
        );
    }

    #[test]
    fn a_perl_module_and_a_worker_file_may_not_share_a_name() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write(first.path(), "NS/A.toml", "");
        write(second.path(), "NS/A.pm", "");
        let lib = [first.path().to_path_buf(), second.path().to_path_buf()];
        let errs = discover(&lib, &["NS".into()]).unwrap_err();
        let shown = errs.to_string();
        assert!(shown.contains("module NS::A is both"), "{shown}");
        assert!(
            shown.contains("A.toml") && shown.contains("A.pm"),
            "{shown}"
        );
    }

    #[test]
    fn empty_namespace_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let errs = table(tmp.path(), &["Nothing"]).unwrap_err();
        assert!(
            errs.to_string().contains("selects no worker file"),
            "{errs}"
        );
    }

    #[test]
    fn options_merge_global_under_module() {
        let mut opts = BTreeMap::new();
        opts.insert(
            "GLOBAL".to_string(),
            toml::from_str::<toml::Table>("a = 1\nb = 2").unwrap(),
        );
        opts.insert(
            "M".to_string(),
            toml::from_str::<toml::Table>("b = 3").unwrap(),
        );
        assert_eq!(worker_options_json(&opts, "M"), r#"{"a":1,"b":3}"#);
        assert_eq!(worker_options_json(&opts, "N"), r#"{"a":1,"b":2}"#);
    }
}
