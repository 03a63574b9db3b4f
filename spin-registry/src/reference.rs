//! Image references and Docker Hub's naming rules.

use std::fmt;
use std::str::FromStr;

use spin_image::Digest;

use crate::Error;

/// The registry that names without a domain refer to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference, `[registry/]repository[:tag][@digest]`.
///
/// `busybox` is `docker.io/library/busybox:latest`; a first component with a
/// `.` or `:`, or `localhost`, is a registry host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (with port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// The host to connect to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host part without the port.
    pub fn host_name(&self) -> &str {
        let h = self.api_host();
        if let Some(rest) = h.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h)
    }

    /// Whether the registry is on this machine's loopback.
    pub fn is_loopback(&self) -> bool {
        let h = self.host_name();
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        })
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-'
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidReference(format!("{s:?}: {why}"));
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| bad("bad digest"))?)),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r, Some(t.to_string())),
            None => (path, None),
        };
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo.to_string()
        };
        if !valid_repo(&repository) {
            return Err(bad(
                "repository names are lowercase letters, digits and . _ - separated by /",
            ));
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(bad("bad tag"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_rules() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r: Reference = "riscv64/hello-world:latest".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/riscv64/hello-world:latest");
        let r: Reference = "127.0.0.1:5000/a/b:v1".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        assert!(r.is_loopback());
        let r: Reference = "localhost/x".parse().unwrap();
        assert_eq!(r.to_string(), "localhost/x:latest");
        assert!(r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("quay.io/x/y@{d}").parse().unwrap();
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.tag, None);
        assert!(!r.is_loopback());
        assert!("Busybox".parse::<Reference>().is_err());
        assert!("busybox:".parse::<Reference>().is_err());
        assert!("busybox@sha256:12".parse::<Reference>().is_err());
        assert!("a//b".parse::<Reference>().is_err());
        let r: Reference = "[::1]:5000/x".parse().unwrap();
        assert!(r.is_loopback());
    }
}
