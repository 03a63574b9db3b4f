//! The protocol between the spin host and `spin-init`, the guest's PID 1.
//!
//! The host and init talk over three named virtio-console ports (see
//! `guest/README.md` for the whole protocol):
//!
//! - [`CONTROL_PORT`]: init writes [`READY`] once the guest has booted, the host
//!   answers with one [`RunSpec`] as a single JSON line, and init finally writes
//!   an [`Report`] line (`exit N` or `error MESSAGE`).
//! - [`STDOUT_PORT`]: the container's standard output.
//! - [`STDERR_PORT`]: the container's standard error.
//! - [`STDIN_PORT`]: the container's standard input; the host closes the port
//!   when its input ends, and the command reads end of file.
//!
//! The run spec travels after boot, never on the kernel command line, so that a
//! booted guest can be snapshotted once and resumed for every container.

use serde::{Deserialize, Serialize};

pub mod host;

/// Name of the virtio-console port that carries the run spec and the exit report.
pub const CONTROL_PORT: &str = "spin.control";
/// Name of the port that carries the container's stdout (and, inbound, its stdin).
pub const STDOUT_PORT: &str = "spin.stdout";
/// Name of the port that carries the container's stderr.
pub const STDERR_PORT: &str = "spin.stderr";
/// Name of the port that carries the container's stdin.
pub const STDIN_PORT: &str = "spin.stdin";
/// The line init writes on the control port when it waits for a run spec.
pub const READY: &str = "ready";

/// What the container runs and with which view of the world.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The command and its arguments; `args[0]` is looked up in `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// The environment, as `KEY=VALUE` strings.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    #[serde(default = "default_cwd")]
    pub cwd: String,
    /// User id the command runs as.
    #[serde(default)]
    pub uid: u32,
    /// Group id the command runs as.
    #[serde(default)]
    pub gid: u32,
    /// A user as an image's `USER` names it (`name`, `uid`, `name:group`,
    /// `uid:gid`), resolved in the container's `/etc/passwd` and `/etc/group`
    /// as Docker does; when set it replaces `uid` and `gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Host name of the container.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Whether the host feeds the container's stdin (otherwise it reads `/dev/null`).
    #[serde(default)]
    pub stdin: bool,
    /// Whether `/dev/vda` holds the root filesystem image (squashfs). Without it the
    /// initramfs itself is the root (useful for kernel bring-up only).
    #[serde(default = "default_true")]
    pub root_disk: bool,
    /// Host folders shared through virtio-9p.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The network configuration of `eth0`, if the container has a network.
    #[serde(default)]
    pub network: Option<NetworkSpec>,
}

/// One virtio-9p share mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The 9p mount tag the host device announces.
    pub tag: String,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// Static IPv4 configuration of the guest's `eth0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The guest's address, e.g. `10.0.2.15`.
    pub address: String,
    /// Prefix length of the guest's subnet, e.g. 24.
    pub prefix_len: u8,
    /// The default gateway, e.g. `10.0.2.2`.
    pub gateway: String,
    /// The DNS server written to `/etc/resolv.conf`, e.g. `10.0.2.3`.
    pub dns: String,
}

fn default_cwd() -> String {
    "/".to_string()
}

fn default_hostname() -> String {
    "spin".to_string()
}

fn default_true() -> bool {
    true
}

/// The last line init writes on the control port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The command ran and ended with this status (128+N when killed by signal N).
    Exit(i32),
    /// The container could not be started; the message says why.
    Error(String),
}

impl Report {
    /// Formats the report as the line init writes (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Report::Exit(code) => format!("exit {code}"),
            Report::Error(msg) => format!("error {}", msg.replace('\n', " ")),
        }
    }

    /// Parses a line written by init; `None` for anything else (e.g. [`READY`]).
    pub fn parse(line: &str) -> Option<Report> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(code) = line.strip_prefix("exit ") {
            return code.trim().parse().ok().map(Report::Exit);
        }
        line.strip_prefix("error ")
            .map(|msg| Report::Error(msg.to_string()))
    }
}

impl RunSpec {
    /// A spec that runs `args` with a conventional `PATH`.
    pub fn command<I, S>(args: I) -> RunSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunSpec {
            args: args.into_iter().map(Into::into).collect(),
            env: vec![DEFAULT_PATH.to_string()],
            cwd: default_cwd(),
            hostname: default_hostname(),
            root_disk: true,
            ..RunSpec::default()
        }
    }

    /// Checks what init cannot work with, so the host can refuse before booting.
    pub fn validate(&self) -> Result<(), String> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err("no command to run".into());
        }
        if !self.cwd.starts_with('/') {
            return Err(format!("working directory {:?} is not absolute", self.cwd));
        }
        for m in &self.mounts {
            if !m.target.starts_with('/') {
                return Err(format!("mount target {:?} is not absolute", m.target));
            }
            if m.target.split('/').any(|c| c == "..") {
                return Err(format!("mount target {:?} contains '..'", m.target));
            }
            if m.tag.is_empty() || m.tag.len() > 31 {
                return Err(format!("mount tag {:?} must be 1 to 31 bytes", m.tag));
            }
        }
        if let Some(e) = self.env.iter().find(|e| !e.contains('=')) {
            return Err(format!("environment entry {e:?} has no '='"));
        }
        Ok(())
    }
}

/// The ids a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the groups of `/etc/group` that list the user).
    pub groups: Vec<u32>,
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`) with the contents
/// of a container's `/etc/passwd` and `/etc/group`, as Docker does: a name must
/// exist; a numeric user without an entry gets group 0; a user's primary group
/// comes from its entry unless a group is given.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<Identity, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // name:password:uid:gid:...
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let (name, uid, gid) = (
            f.first()?,
            f.get(2)?.parse::<u32>().ok()?,
            f.get(3)?.parse::<u32>().ok()?,
        );
        let matches = match user_part.parse::<u32>() {
            Ok(n) => uid == n,
            Err(_) => *name == user_part,
        };
        matches.then(|| (name.to_string(), uid, gid))
    });
    let (name, uid, primary) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (Some(e.0), e.1, e.2),
        (None, Ok(uid)) => (None, uid, 0),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ));
        }
    };
    // name:password:gid:member,member
    let groups: Vec<(&str, u32, Vec<&str>)> = group
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let members = f
                .get(3)
                .map(|m| m.split(',').filter(|m| !m.is_empty()).collect());
            Some((
                *f.first()?,
                f.get(2)?.parse::<u32>().ok()?,
                members.unwrap_or_default(),
            ))
        })
        .collect();
    let gid = match group_part {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|(n, _, _)| *n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    let mut supplementary: Vec<u32> = match &name {
        Some(n) if group_part.is_none() => groups
            .iter()
            .filter(|(_, _, members)| members.contains(&n.as_str()))
            .map(|(_, id, _)| *id)
            .collect(),
        _ => Vec::new(),
    };
    supplementary.retain(|g| *g != gid);
    supplementary.dedup();
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
    })
}

/// The `PATH` a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json() {
        let mut spec = RunSpec::command(["sh", "-c", "echo $X"]);
        spec.env.push("X=1 2".into());
        spec.mounts.push(MountSpec {
            tag: "m0".into(),
            target: "/import".into(),
            readonly: true,
        });
        let line = serde_json::to_string(&spec).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<RunSpec>(&line).unwrap(), spec);
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let spec: RunSpec = serde_json::from_str(r#"{"args":["true"]}"#).unwrap();
        assert_eq!(spec.cwd, "/");
        assert!(spec.root_disk);
        assert!(!spec.stdin);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<RunSpec>(r#"{"args":["true"],"bogus":1}"#).is_err());
    }

    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\nwww:x:33:\napp:x:1000:\nstaff:x:50:app,other\nmail:x:8:app\n";
        let id = |uid, gid, groups: &[u32]| Identity {
            uid,
            gid,
            groups: groups.to_vec(),
        };
        assert_eq!(
            resolve_user("app", passwd, group),
            Ok(id(1000, 1000, &[50, 8]))
        );
        assert_eq!(resolve_user("www", passwd, group), Ok(id(33, 33, &[])));
        assert_eq!(
            resolve_user("1000", passwd, group),
            Ok(id(1000, 1000, &[50, 8]))
        );
        assert_eq!(resolve_user("4242", passwd, group), Ok(id(4242, 0, &[])));
        assert_eq!(
            resolve_user("app:staff", passwd, group),
            Ok(id(1000, 50, &[]))
        );
        assert_eq!(resolve_user("4242:7", passwd, group), Ok(id(4242, 7, &[])));
        assert!(
            resolve_user("nobody", passwd, group)
                .unwrap_err()
                .contains("nobody")
        );
        assert!(
            resolve_user("app:nogroup", passwd, group)
                .unwrap_err()
                .contains("nogroup")
        );
        assert_eq!(resolve_user("0", "", ""), Ok(id(0, 0, &[])));
    }

    #[test]
    fn validate_rejects_bad_specs() {
        assert!(RunSpec::command(Vec::<String>::new()).validate().is_err());
        let mut s = RunSpec::command(["ls"]);
        s.cwd = "tmp".into();
        assert!(s.validate().is_err());
        let mut s = RunSpec::command(["ls"]);
        s.mounts.push(MountSpec {
            tag: "m".into(),
            target: "/a/../b".into(),
            readonly: false,
        });
        assert!(s.validate().is_err());
        assert!(RunSpec::command(["ls"]).validate().is_ok());
    }

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Exit(0),
            Report::Exit(137),
            Report::Error("no such file".into()),
        ] {
            assert_eq!(Report::parse(&r.to_line()), Some(r));
        }
        assert_eq!(Report::parse(READY), None);
        assert_eq!(Report::parse("exit x"), None);
    }
}
