//! The guest side: everything PID 1 does between boot and power-off.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use spin_init::{
    CONTROL_PORT, Identity, MountSpec, NetworkSpec, READY, Report, RunSpec, STDERR_PORT,
    STDIN_PORT, STDOUT_PORT, resolve_user,
};

/// Where the container's root is assembled before init switches into it.
const NEW_ROOT: &str = "/mnt/root";
/// How long init waits for the host's virtio-console ports to appear.
const PORT_TIMEOUT: Duration = Duration::from_secs(20);

pub fn main() {
    if let Err(e) = mount_fs("proc", "/proc", "proc", 0, "")
        .and_then(|_| mount_fs("sysfs", "/sys", "sysfs", 0, ""))
        .and_then(|_| mount_fs("devtmpfs", "/dev", "devtmpfs", 0, ""))
    {
        fatal(&format!("mounting /proc, /sys, /dev: {e}"));
    }
    let ports = match find_ports() {
        Ok(p) => p,
        Err(e) => fatal(&e),
    };
    let mut control = match OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ports[CONTROL_PORT])
    {
        Ok(f) => f,
        Err(e) => fatal(&format!("opening the control port: {e}")),
    };
    let report = match run(&mut control, &ports) {
        Ok(code) => Report::Exit(code),
        Err(e) => Report::Error(e),
    };
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let _ = writeln!(control, "{}", report.to_line());
    power_off();
}

/// Receives the spec, builds the container's root and runs its command.
fn run(control: &mut File, ports: &HashMap<String, PathBuf>) -> Result<i32, String> {
    writeln!(control, "{READY}").map_err(|e| format!("writing to the control port: {e}"))?;
    let line = read_line(control).map_err(|e| format!("reading the run spec: {e}"))?;
    let spec: RunSpec =
        serde_json::from_str(&line).map_err(|e| format!("malformed run spec: {e}"))?;
    spec.validate()?;

    // The stdio ports stay open across the switch of root.
    let stdout = open_rw(&ports[STDOUT_PORT])?;
    let stderr = open_rw(&ports[STDERR_PORT])?;
    let stdin = if spec.stdin {
        Some(open_rw(&ports[STDIN_PORT])?)
    } else {
        None
    };

    let root = if spec.root_disk {
        assemble_root()?;
        Path::new(NEW_ROOT)
    } else {
        Path::new("/")
    };
    mount_mounts(root, &spec.mounts)?;
    configure_identity(root, &spec)?;
    if let Some(net) = &spec.network {
        configure_network(net)?;
    }
    if root != Path::new("/") {
        switch_root(root)?;
    }
    let identity = match &spec.user {
        Some(user) => {
            let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
            resolve_user(user, &read("/etc/passwd"), &read("/etc/group"))?
        }
        None => Identity {
            uid: spec.uid,
            gid: spec.gid,
            groups: Vec::new(),
        },
    };
    let stdin = match stdin {
        Some(port) => port,
        None => open_rw(Path::new("/dev/null"))?,
    };
    Ok(supervise(&spec, &identity, [stdin, stdout, stderr]))
}

fn open_rw(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// Reads one line byte by byte, so nothing after it is consumed.
fn read_line(f: &mut File) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8];
    loop {
        match f.read(&mut byte) {
            Ok(0) if buf.is_empty() => continue, // the host has not written yet
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Maps virtio-console port names to their device nodes, waiting for them to appear.
fn find_ports() -> Result<HashMap<String, PathBuf>, String> {
    let wanted = [CONTROL_PORT, STDOUT_PORT, STDERR_PORT, STDIN_PORT];
    let start = Instant::now();
    loop {
        let mut found = HashMap::new();
        if let Ok(entries) = fs::read_dir("/sys/class/virtio-ports") {
            for entry in entries.flatten() {
                let name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                let name = name.trim();
                let dev = Path::new("/dev").join(entry.file_name());
                if wanted.contains(&name) && dev.exists() {
                    found.insert(name.to_string(), dev);
                }
            }
        }
        if wanted.iter().all(|w| found.contains_key(*w)) {
            return Ok(found);
        }
        if start.elapsed() > PORT_TIMEOUT {
            let missing: Vec<_> = wanted.iter().filter(|w| !found.contains_key(**w)).collect();
            return Err(format!("virtio-console ports {missing:?} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The image (squashfs on /dev/vda) read-only under a tmpfs overlay at [`NEW_ROOT`].
fn assemble_root() -> Result<(), String> {
    for d in ["/mnt/lower", "/mnt/rw", NEW_ROOT] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    mount_fs("/dev/vda", "/mnt/lower", "squashfs", libc::MS_RDONLY, "")
        .map_err(|e| format!("mounting the image /dev/vda: {e}"))?;
    mount_fs("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755")?;
    for d in ["/mnt/rw/upper", "/mnt/rw/work"] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    mount_fs(
        "overlay",
        NEW_ROOT,
        "overlay",
        0,
        "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work",
    )?;
    for (src, dir, fstype, data) in [
        ("proc", "proc", "proc", ""),
        ("sysfs", "sys", "sysfs", ""),
        ("devtmpfs", "dev", "devtmpfs", ""),
        ("devpts", "dev/pts", "devpts", "ptmxmode=0666,newinstance"),
        ("tmpfs", "dev/shm", "tmpfs", "mode=1777"),
    ] {
        let target = Path::new(NEW_ROOT).join(dir);
        fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        mount_fs(src, &target.to_string_lossy(), fstype, 0, data)?;
    }
    Ok(())
}

fn mount_mounts(root: &Path, mounts: &[MountSpec]) -> Result<(), String> {
    for m in mounts {
        let target = root.join(m.target.trim_start_matches('/'));
        fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        let flags = if m.readonly { libc::MS_RDONLY } else { 0 };
        mount_fs(
            &m.tag,
            &target.to_string_lossy(),
            "9p",
            flags,
            "trans=virtio,version=9p2000.L,msize=262144",
        )
        .map_err(|e| format!("mounting share {:?} at {}: {e}", m.tag, m.target))?;
    }
    Ok(())
}

/// Host name, `/etc/hosts`, `/etc/hostname` and (with a network) `/etc/resolv.conf`.
fn configure_identity(root: &Path, spec: &RunSpec) -> Result<(), String> {
    let name = spec.hostname.as_bytes();
    // SAFETY: the pointer and length describe a live byte slice.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(format!("sethostname: {}", io::Error::last_os_error()));
    }
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(|e| format!("mkdir /etc: {e}"))?;
    let mut hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_string();
    if let Some(net) = &spec.network {
        hosts.push_str(&format!("{}\t{}\n", net.address, spec.hostname));
        write_file(
            &etc.join("resolv.conf"),
            &format!("nameserver {}\n", net.dns),
        )?;
    } else {
        hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
    }
    write_file(&etc.join("hosts"), &hosts)?;
    write_file(&etc.join("hostname"), &format!("{}\n", spec.hostname))?;
    if let Err(e) = set_link_up("lo") {
        return Err(format!("bringing up lo: {e}"));
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    // A symlink in the image must not redirect init's writes.
    let _ = fs::remove_file(path);
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn switch_root(root: &Path) -> Result<(), String> {
    std::env::set_current_dir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    mount_fs(".", "/", "", libc::MS_MOVE, "").map_err(|e| format!("moving the root: {e}"))?;
    let dot = CString::new(".").unwrap();
    // SAFETY: dot is a valid C string.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(format!("chroot: {}", io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

fn mount_fs(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
    let (src_c, target_c, type_c, data_c) = (c(src)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: all pointers are valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src_c.as_ptr(),
            target_c.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                type_c.as_ptr()
            },
            flags,
            data_c.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount {src} on {target} ({fstype}): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A datagram socket: the handle the interface ioctls need.
fn ioctl_socket() -> io::Result<File> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ioctl(sock: &File, request: libc::Ioctl, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: callers pass a pointer to the structure `request` expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, arg) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_link_up(name: &str) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut req = ifreq_for(name)?;
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )
}

fn sockaddr_in(addr: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; sockaddr is the generic view.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn configure_network(net: &NetworkSpec) -> Result<(), String> {
    let parse = |s: &str| -> Result<std::net::Ipv4Addr, String> {
        s.parse().map_err(|_| format!("bad IPv4 address {s:?}"))
    };
    let (addr, gateway) = (parse(&net.address)?, parse(&net.gateway)?);
    if net.prefix_len > 32 {
        return Err(format!("bad prefix length {}", net.prefix_len));
    }
    let mask = std::net::Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - net.prefix_len as u32)
            .unwrap_or(0),
    );
    let err = |what: &str, e: io::Error| format!("configuring eth0 ({what}): {e}");
    let sock = ioctl_socket().map_err(|e| err("socket", e))?;
    let mut req = ifreq_for("eth0").map_err(|e| err("name", e))?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    ioctl(
        &sock,
        libc::SIOCSIFADDR,
        (&mut req as *mut libc::ifreq).cast(),
    )
    .map_err(|e| err("address", e))?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(mask);
    ioctl(
        &sock,
        libc::SIOCSIFNETMASK,
        (&mut req as *mut libc::ifreq).cast(),
    )
    .map_err(|e| err("netmask", e))?;
    set_link_up("eth0").map_err(|e| err("up", e))?;
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr_in(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    ioctl(
        &sock,
        libc::SIOCADDRT,
        (&mut route as *mut libc::rtentry).cast(),
    )
    .map_err(|e| err("default route", e))
}

/// Signals init passes on to the container's process.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: libc::c_int) {
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Runs the command as init's child, reaps every orphan, returns the command's status.
fn supervise(spec: &RunSpec, identity: &Identity, stdio: [File; 3]) -> i32 {
    let child = match spawn(spec, identity, &stdio) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    drop(stdio);
    for sig in FORWARDED {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, remember_signal as *const () as libc::sighandler_t) };
    }
    let mut code = None;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                let sig = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
                if sig != 0 && code.is_none() {
                    // SAFETY: plain kill of our own child.
                    unsafe { libc::kill(child, sig) };
                }
                continue;
            }
            break; // ECHILD: nothing left to reap
        }
        if pid == child {
            code = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
            // The container ends with its main process, as with Docker.
            // SAFETY: kill(-1) signals every process but init itself.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        }
    }
    code.unwrap_or(255)
}

/// Forks and execs the command; returns the child's pid, or the exit code on failure.
fn spawn(spec: &RunSpec, identity: &Identity, stdio: &[File; 3]) -> Result<libc::pid_t, i32> {
    let path_var = spec
        .env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let program = resolve(&spec.args[0], path_var);
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let prog_c = CString::new(program.as_os_str().as_bytes()).unwrap_or_default();
    let args_c: Vec<CString> = spec.args.iter().map(|a| cstr(a)).collect();
    let env_c: Vec<CString> = spec.env.iter().map(|e| cstr(e)).collect();
    let mut argv: Vec<*const libc::c_char> = args_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = Path::new(&spec.cwd);
    if !cwd.is_dir() {
        // Docker creates a missing working directory.
        let _ = fs::create_dir_all(cwd);
    }
    let cwd_c = cstr(&spec.cwd);

    // SAFETY: init is single-threaded, so the child may run arbitrary code after fork;
    // it only calls async-signal-safe functions before exec anyway.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let _ = writeln!(&stdio[2], "spin-init: fork: {}", io::Error::last_os_error());
        return Err(126);
    }
    if pid > 0 {
        return Ok(pid);
    }
    // The child.
    // SAFETY: every pointer passed below is valid until exec or _exit.
    unsafe {
        libc::setsid();
        for (i, f) in stdio.iter().enumerate() {
            libc::dup2(f.as_raw_fd(), i as libc::c_int);
        }
        let fail = |what: &str, code: i32| -> ! {
            let err = io::Error::last_os_error();
            let _ = writeln!(io::stderr(), "spin-init: {what} {:?}: {err}", spec.args[0]);
            libc::_exit(code)
        };
        let groups = &identity.groups;
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(identity.gid) != 0 {
            fail("cannot set group for", 126);
        }
        if libc::setuid(identity.uid) != 0 {
            fail("cannot set user for", 126);
        }
        if libc::chdir(cwd_c.as_ptr()) != 0 {
            fail("cannot enter working directory for", 126);
        }
        libc::execve(prog_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let code = if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            127
        } else {
            126
        };
        fail("cannot run", code)
    }
}

/// Looks `name` up in `path_var` the way a shell does (names with `/` are used as they are).
fn resolve(name: &str, path_var: &str) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(OsStr::new(name));
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(name)
}

/// Ends the guest when not even the control port is there to report on.
fn fatal(msg: &str) -> ! {
    eprintln!("spin-init: {msg}");
    power_off()
}

fn power_off() -> ! {
    // SAFETY: reboot only needs CAP_SYS_BOOT, which PID 1 has.
    unsafe {
        libc::sync();
        // On x86 there is no ACPI to power off with: a reset ends the machine
        // (QEMU -no-reboot, and spin's x86 emulator, treat it as the end).
        #[cfg(target_arch = "x86_64")]
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
        #[cfg(not(target_arch = "x86_64"))]
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}
