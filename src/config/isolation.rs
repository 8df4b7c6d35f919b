//! What a worker file's processes run as and within: `user`, `group`,
//! `umask` and `rlimits`, plus the driver-wide `user` that files without
//! their own inherit.
//!
//! Everything is resolved and checked here, at load time: names become
//! numeric IDs and supplementary group lists, limits become bytes, and
//! whatever the driver could not apply (a switch of user without root, a
//! limit above the driver's own hard limit) is a configuration error naming
//! the key. The child process between fork and exec then only makes plain
//! system calls with these numbers (see `supervisor::spawn`), because
//! looking a user up there (NSS, files, allocation) is not
//! async-signal-safe.

use std::collections::BTreeMap;

use nix::sys::resource::Resource;
use nix::unistd::{Gid, Group, Uid, User};
use toml::Spanned;

/// A worker file's isolation, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Who the processes run as; `None`: as the driver.
    pub identity: Option<Identity>,
    /// The processes' umask; `None`: the driver's.
    pub umask: Option<u32>,
    /// Limits set (soft and hard alike) before exec.
    pub rlimits: Vec<Rlimit>,
}

/// `worker_scheduling` / `--worker-scheduling`: the CPU scheduling policy of
/// every process the driver starts (systemd's `CPUSchedulingPolicy=`).
///
/// `batch` is the default because the supervisor relays every stdio job:
/// under `normal`, the pipe write that hands a process its job lets the
/// woken process preempt the supervisor on the spot (wake-up preemption),
/// which then cannot relay the other jobs of the same wake-up until it is
/// scheduled again. A `SCHED_BATCH` process gets the same share of the CPU
/// at the same nice value; it only waits for the next scheduling point
/// instead of preempting the task that woke it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScheduling {
    /// `SCHED_BATCH`: no wake-up preemption of the supervisor.
    #[default]
    Batch,
    /// `SCHED_OTHER`, as the driver itself runs.
    Normal,
}

impl WorkerScheduling {
    /// The policy for `sched_setscheduler`.
    pub fn policy(self) -> libc::c_int {
        match self {
            WorkerScheduling::Batch => libc::SCHED_BATCH,
            WorkerScheduling::Normal => libc::SCHED_OTHER,
        }
    }

    /// The name the configuration takes (clap's, which serde's matches).
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

/// A user and group to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's, as `initgroups` would set them.
    pub groups: Vec<u32>,
}

/// One resource limit, in the unit the kernel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    /// `RLIM_INFINITY` for `"unlimited"`.
    pub value: u64,
}

const MIB: u64 = 1024 * 1024;

/// The `rlimits` names, what they limit, and the unit of their values.
pub const RLIMITS: &[(&str, Resource, u64)] = &[
    ("nofile", Resource::RLIMIT_NOFILE, 1),
    ("nproc", Resource::RLIMIT_NPROC, 1),
    ("cpu_s", Resource::RLIMIT_CPU, 1),
    ("as_mib", Resource::RLIMIT_AS, MIB),
    ("data_mib", Resource::RLIMIT_DATA, MIB),
    ("stack_mib", Resource::RLIMIT_STACK, MIB),
    ("fsize_mib", Resource::RLIMIT_FSIZE, MIB),
    ("memlock_mib", Resource::RLIMIT_MEMLOCK, MIB),
    ("core", Resource::RLIMIT_CORE, MIB),
];

/// The driver's own effective IDs: whether it may switch users, and what
/// "no change" means. A parameter so that tests can play a non-root driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Me {
    pub uid: u32,
    pub gid: u32,
}

impl Me {
    pub fn current() -> Me {
        Me {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn is_root(self) -> bool {
        self.uid == 0
    }
}

/// The isolation keys of a worker file, as written.
pub struct Requested<'a> {
    pub user: Option<&'a Spanned<String>>,
    pub group: Option<&'a Spanned<String>>,
    pub umask: Option<&'a Spanned<toml::Value>>,
    pub rlimits: &'a BTreeMap<String, Spanned<toml::Value>>,
}

/// One problem: the key, the byte offset of its value, the message.
pub type Problem = (String, usize, String);

/// Resolves a worker file's isolation. `default_user` is the driver-wide
/// `user`; its own problems are reported with the driver config, not here.
pub fn resolve(
    requested: &Requested,
    default_user: Option<&str>,
    me: Me,
) -> (Isolation, Vec<Problem>) {
    let mut problems = Vec::new();
    let identity = resolve_file_identity(requested, default_user, me, &mut problems);
    let umask = requested
        .umask
        .and_then(|v| match parse_umask(v.get_ref()) {
            Ok(mask) => Some(mask),
            Err(msg) => {
                problems.push(("umask".into(), v.span().start, msg));
                None
            }
        });
    let mut rlimits = Vec::new();
    for (name, value) in requested.rlimits {
        match parse_rlimit(name, value.get_ref(), me) {
            Ok(limit) => rlimits.push(limit),
            Err(msg) => problems.push((format!("rlimits.{name}"), value.span().start, msg)),
        }
    }
    let isolation = Isolation {
        identity,
        umask,
        rlimits,
    };
    (isolation, problems)
}

fn resolve_file_identity(
    requested: &Requested,
    default_user: Option<&str>,
    me: Me,
    problems: &mut Vec<Problem>,
) -> Option<Identity> {
    let own_user = requested.user.map(|u| u.get_ref().as_str());
    let group = requested.group.map(|g| g.get_ref().as_str());
    match identity(own_user.or(default_user), group, me) {
        Ok(identity) => identity,
        Err((Which::User, _)) if own_user.is_none() => None,
        Err((which, msg)) => {
            let (key, spanned) = match which {
                Which::User => ("user", requested.user),
                Which::Group => ("group", requested.group),
            };
            let offset = spanned.map_or(0, |s| s.span().start);
            problems.push((key.into(), offset, msg));
            None
        }
    }
}

/// Which key a problem with the identity lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    User,
    Group,
}

/// The identity to switch to for `user` and `group` (names or numeric IDs
/// that exist), or `None` when they name the driver's own. A change needs
/// a root driver. The group defaults to the user's primary group.
pub fn identity(
    user: Option<&str>,
    group: Option<&str>,
    me: Me,
) -> Result<Option<Identity>, (Which, String)> {
    let user = user
        .map(lookup_user)
        .transpose()
        .map_err(|m| (Which::User, m))?;
    let group = group
        .map(lookup_group)
        .transpose()
        .map_err(|m| (Which::Group, m))?;
    let uid = user.as_ref().map_or(me.uid, |u| u.uid.as_raw());
    let gid = group
        .as_ref()
        .map(|g| g.gid.as_raw())
        .or(user.as_ref().map(|u| u.gid.as_raw()))
        .unwrap_or(me.gid);
    if uid == me.uid && gid == me.gid {
        return Ok(None);
    }
    if !me.is_root() {
        let (which, what) = if uid != me.uid {
            (
                Which::User,
                format!("user `{}`", user.map(|u| u.name).unwrap_or_default()),
            )
        } else {
            (
                Which::Group,
                format!("group `{}`", group.map(|g| g.name).unwrap_or_default()),
            )
        };
        return Err((
            which,
            format!(
                "running worker processes as {what} needs a driver started as root (it runs as uid {})",
                me.uid
            ),
        ));
    }
    let groups = match &user {
        Some(u) => supplementary_groups(u, gid)?,
        None => vec![gid],
    };
    Ok(Some(Identity { uid, gid, groups }))
}

fn lookup_user(name: &str) -> Result<User, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    found
        .map_err(|e| format!("cannot look up user `{name}`: {e}"))?
        .ok_or_else(|| format!("no such user `{name}`"))
}

fn lookup_group(name: &str) -> Result<Group, String> {
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(name),
    };
    found
        .map_err(|e| format!("cannot look up group `{name}`: {e}"))?
        .ok_or_else(|| format!("no such group `{name}`"))
}

fn supplementary_groups(user: &User, gid: u32) -> Result<Vec<u32>, (Which, String)> {
    let name = std::ffi::CString::new(user.name.as_str())
        .map_err(|_| (Which::User, format!("bad user name `{}`", user.name)))?;
    let groups = nix::unistd::getgrouplist(&name, Gid::from_raw(gid)).map_err(|e| {
        (
            Which::User,
            format!("cannot list the groups of `{}`: {e}", user.name),
        )
    })?;
    Ok(groups.into_iter().map(Gid::as_raw).collect())
}

/// An octal string such as `"0027"`. A TOML number is refused: `umask =
/// 027` is not valid TOML, and `umask = 27` would silently mean 0o33.
pub fn parse_umask(value: &toml::Value) -> Result<u32, String> {
    let toml::Value::String(text) = value else {
        return Err(format!(
            "write the umask as an octal string, e.g. umask = \"0027\" (got {value})"
        ));
    };
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let valid =
        (1..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if valid && mask <= 0o777 => Ok(mask),
        _ => Err(format!(
            "`{text}` is not a umask: use up to four octal digits from \"0000\" to \"0777\""
        )),
    }
}

/// One `rlimits` entry: a known name, and a non-negative integer (in the
/// name's unit) or `"unlimited"`. A driver that is not root cannot raise a
/// hard limit, so a value above its own is refused here.
pub fn parse_rlimit(name: &str, value: &toml::Value, me: Me) -> Result<Rlimit, String> {
    let Some(&(name, resource, unit)) = RLIMITS.iter().find(|(n, _, _)| *n == name) else {
        let known: Vec<&str> = RLIMITS.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "unknown resource limit `{name}` (known: {})",
            known.join(", ")
        ));
    };
    let value = match value {
        toml::Value::Integer(n) if *n >= 0 => (*n as u64)
            .checked_mul(unit)
            .filter(|v| *v != nix::sys::resource::RLIM_INFINITY)
            .ok_or_else(|| format!("{n} is too large"))?,
        toml::Value::String(s) if s == "unlimited" => nix::sys::resource::RLIM_INFINITY,
        other => {
            return Err(format!(
                "expected a number >= 0 or \"unlimited\", got {other}"
            ))
        }
    };
    if !me.is_root() {
        if let Ok((_, hard)) = nix::sys::resource::getrlimit(resource) {
            if value > hard {
                return Err(format!(
                    "the driver's own hard limit is {}; only a driver started as root can raise it",
                    shown_limit(hard, unit)
                ));
            }
        }
    }
    Ok(Rlimit {
        name,
        resource,
        value,
    })
}

fn shown_limit(value: u64, unit: u64) -> String {
    if value == nix::sys::resource::RLIM_INFINITY {
        "unlimited".into()
    } else {
        (value / unit).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Me = Me { uid: 0, gid: 0 };
    const NOBODY: Me = Me {
        uid: 65534,
        gid: 65534,
    };

    fn v(text: &str) -> toml::Value {
        toml::from_str::<toml::Table>(&format!("v = {text}")).unwrap()["v"].clone()
    }

    #[test]
    fn umask_is_an_octal_string() {
        assert_eq!(parse_umask(&v("\"0027\"")), Ok(0o027));
        assert_eq!(parse_umask(&v("\"077\"")), Ok(0o077));
        assert_eq!(parse_umask(&v("\"0o22\"")), Ok(0o022));
        assert_eq!(parse_umask(&v("\"0\"")), Ok(0));
        for bad in ["\"0028\"", "\"1777\"", "\"\"", "\"00000\"", "\"u=rwx\""] {
            let err = parse_umask(&v(bad)).unwrap_err();
            assert!(err.contains("not a umask"), "{bad}: {err}");
        }
        let err = parse_umask(&v("27")).unwrap_err();
        assert!(err.contains("octal string"), "{err}");
    }

    #[test]
    fn rlimits_take_numbers_in_their_unit_or_unlimited() {
        let nofile = parse_rlimit("nofile", &v("1024"), ROOT).unwrap();
        assert_eq!(
            (nofile.resource, nofile.value),
            (Resource::RLIMIT_NOFILE, 1024)
        );
        let mem = parse_rlimit("as_mib", &v("2048"), ROOT).unwrap();
        assert_eq!(mem.value, 2048 * MIB);
        let core = parse_rlimit("core", &v("0"), ROOT).unwrap();
        assert_eq!(core.value, 0);
        let cpu = parse_rlimit("cpu_s", &v("\"unlimited\""), ROOT).unwrap();
        assert_eq!(cpu.value, nix::sys::resource::RLIM_INFINITY);
        let err = parse_rlimit("nofiles", &v("1"), ROOT).unwrap_err();
        assert!(err.contains("unknown resource limit `nofiles`"), "{err}");
        assert!(err.contains("nofile, nproc"), "{err}");
        for bad in ["-1", "1.5", "\"lots\"", "9223372036854775807"] {
            assert!(parse_rlimit("as_mib", &v(bad), ROOT).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_non_root_driver_cannot_raise_a_hard_limit() {
        let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        if hard == nix::sys::resource::RLIM_INFINITY {
            return;
        }
        let above = toml::Value::Integer(hard as i64 + 1);
        let err = parse_rlimit("nofile", &above, NOBODY).unwrap_err();
        assert!(err.contains("only a driver started as root"), "{err}");
        assert!(parse_rlimit("nofile", &above, ROOT).is_ok());
        assert!(
            parse_rlimit("nofile", &v("16"), NOBODY).is_ok(),
            "lowering is fine"
        );
    }

    #[test]
    fn switching_users_needs_root() {
        let (which, err) = identity(Some("root"), None, NOBODY).unwrap_err();
        assert_eq!(which, Which::User);
        assert!(err.contains("needs a driver started as root"), "{err}");
        let (which, err) = identity(None, Some("root"), NOBODY).unwrap_err();
        assert_eq!(which, Which::Group);
        assert!(err.contains("group `root`"), "{err}");
        assert_eq!(
            identity(Some("nobody"), None, NOBODY),
            Ok(None),
            "as itself"
        );
    }

    #[test]
    fn users_and_groups_resolve_to_ids() {
        let nobody = identity(Some("nobody"), None, ROOT).unwrap().unwrap();
        let expected = User::from_name("nobody").unwrap().unwrap();
        assert_eq!(nobody.uid, expected.uid.as_raw());
        assert_eq!(nobody.gid, expected.gid.as_raw());
        assert!(nobody.groups.contains(&nobody.gid));
        let by_number = identity(Some(&nobody.uid.to_string()), None, ROOT).unwrap();
        assert_eq!(by_number.map(|i| i.uid), Some(nobody.uid));
        let root_group = identity(Some("nobody"), Some("root"), ROOT)
            .unwrap()
            .unwrap();
        assert_eq!(root_group.gid, 0);
        let group_only = identity(None, Some("nobody"), ROOT);
        let group_only = group_only.or_else(|_| identity(None, Some("nogroup"), ROOT));
        assert!(group_only
            .unwrap()
            .is_some_and(|i| i.uid == 0 && i.groups.len() == 1));
        assert_eq!(identity(Some("root"), None, ROOT), Ok(None));
    }

    #[test]
    fn unknown_names_are_errors() {
        let (which, err) = identity(Some("no-such-user-xyz"), None, ROOT).unwrap_err();
        assert_eq!(
            (which, err.as_str()),
            (Which::User, "no such user `no-such-user-xyz`")
        );
        let (which, err) = identity(None, Some("no-such-group-xyz"), ROOT).unwrap_err();
        assert_eq!(which, Which::Group);
        assert!(err.contains("no such group"), "{err}");
    }
}
