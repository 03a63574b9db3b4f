//! Test and demo images made from Debian's `busybox-static`.
//!
//! amd64: the installed package (`/bin/busybox`). riscv64: the package from
//! Debian trixie, downloaded with a private apt configuration that leaves the
//! system's apt state alone (DESIGN §3).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use spin_qemu::Arch;

use crate::{artifacts_dir, cache, output_of, run_cmd};

/// Bump when the image layout changes.
const IMAGE_RECIPE: &str = "busybox-image-1";

/// Builds `target/spin/images/busybox-<arch>.sqfs`.
pub fn build_busybox_image(arch: Arch) -> Result<()> {
    let busybox = busybox_binary(arch)?;
    let key = cache::Key::default()
        .add("recipe", IMAGE_RECIPE)
        .add("arch", arch.name())
        .add_file(&busybox)?
        .finish();
    let entry = cache::entry(&format!("image-busybox-{arch}-{key}"), |out| {
        let root = out.join("rootfs");
        populate_rootfs(arch, &busybox, &root)?;
        run_cmd(
            Command::new("mksquashfs")
                .arg(&root)
                .arg(out.join("busybox.sqfs"))
                .args(["-noappend", "-all-root", "-quiet", "-comp", "gzip"])
                .stdout(std::process::Stdio::null()),
        )
        .context("mksquashfs (package squashfs-tools)")?;
        fs::remove_dir_all(&root)?;
        Ok(())
    })?;
    let dest = artifacts_dir()
        .join("images")
        .join(format!("busybox-{arch}.sqfs"));
    cache::install_file(&entry.join("busybox.sqfs"), &dest)?;
    println!("{}", dest.display());
    Ok(())
}

fn populate_rootfs(arch: Arch, busybox: &Path, root: &Path) -> Result<()> {
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "mnt",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::create_dir_all(root.join("tmp"))?;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let bin = root.join("bin/busybox");
    fs::copy(busybox, &bin)?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    let mut list = Command::new(match arch {
        Arch::Riscv64 => "qemu-riscv64-static",
        Arch::X86_64 => "env",
    });
    list.arg(busybox).arg("--list-full");
    let applets = output_of(&mut list).context("listing busybox applets")?;
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if applet == "bin/busybox" || link.exists() {
            continue;
        }
        symlink("/bin/busybox", &link).with_context(|| format!("linking {applet}"))?;
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// The static busybox for `arch`.
fn busybox_binary(arch: Arch) -> Result<PathBuf> {
    match arch {
        Arch::X86_64 => {
            let p = PathBuf::from("/bin/busybox");
            if !p.exists() {
                bail!("/bin/busybox is missing: run `cargo xtask deps` (package busybox-static)");
            }
            Ok(p)
        }
        Arch::Riscv64 => {
            let mirror = debian_mirror()?;
            let key = cache::Key::default().add("mirror", &mirror).finish();
            let entry = cache::entry(&format!("busybox-riscv64-{key}"), |out| {
                fetch_riscv64_busybox(&mirror, out)
            })?;
            Ok(entry.join("busybox"))
        }
    }
}

/// The Debian mirror this machine's apt uses (never written down in the project).
fn debian_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            // Only active source files: others (e.g. `*.disabled`) may name non-Debian hosts.
            if f.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(fs::read_to_string(f).unwrap_or_default());
            }
        }
    }
    texts.push(fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let uri = match words.first() {
                Some(&"URIs:") => words.get(1),
                Some(&"deb") => words.iter().skip(1).find(|w| w.contains("://")),
                _ => None,
            };
            if let Some(uri) = uri
                && !uri.contains("security")
            {
                return Ok(uri.to_string());
            }
        }
    }
    bail!("no Debian mirror found in /etc/apt sources")
}

/// Downloads trixie's riscv64 busybox-static and unpacks its binary into `out`.
fn fetch_riscv64_busybox(mirror: &str, out: &Path) -> Result<()> {
    let apt = out.join("apt");
    for d in [
        "lists/partial",
        "cache/archives/partial",
        "parts",
        "prefs.d",
    ] {
        fs::create_dir_all(apt.join(d))?;
    }
    fs::write(apt.join("status"), "")?;
    fs::write(
        apt.join("sources.list"),
        format!(
            "deb [arch=riscv64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} trixie main\n"
        ),
    )?;
    let a = apt.display();
    fs::write(
        apt.join("apt.conf"),
        format!(
            "APT::Architecture \"riscv64\"; APT::Architectures {{ \"riscv64\"; }};\n\
             Dir::State \"{a}\"; Dir::State::Lists \"{a}/lists\"; Dir::State::status \"{a}/status\";\n\
             Dir::Cache \"{a}/cache\"; Dir::Etc::SourceList \"{a}/sources.list\"; Dir::Etc::SourceParts \"{a}/parts\";\n\
             Dir::Etc::Preferences \"{a}/prefs\"; Dir::Etc::PreferencesParts \"{a}/prefs.d\"; Acquire::Languages \"none\";\n"
        ),
    )?;
    let apt_get = || {
        let mut c = Command::new("apt-get");
        c.env("APT_CONFIG", apt.join("apt.conf")).current_dir(out);
        c
    };
    eprintln!("build-guest: downloading Debian trixie's riscv64 busybox-static");
    output_of(apt_get().args(["update", "-qq"])).context("apt-get update (riscv64, trixie)")?;
    output_of(apt_get().args(["download", "busybox-static"]))
        .context("apt-get download busybox-static")?;
    let deb = fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let unpacked = out.join("unpacked");
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    fs::rename(unpacked.join("bin/busybox"), out.join("busybox"))
        .or_else(|_| fs::rename(unpacked.join("usr/bin/busybox"), out.join("busybox")))
        .context("the package holds no bin/busybox")?;
    fs::remove_dir_all(&unpacked)?;
    fs::remove_dir_all(&apt)?;
    fs::remove_file(&deb)?;
    Ok(())
}
