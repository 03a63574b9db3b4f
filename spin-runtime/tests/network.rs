//! Containers with a network (spin-net behind the wasm emulator's virtio-net),
//! against real TCP peers on the host's loopback.

mod common;

use common::{Capture, busybox, runtime};

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spin_runtime::{Error, Forward, Networking, Policy};

/// A one-shot HTTP server on the host's loopback; counts the connections it got.
fn http_server(body: &'static str) -> (u16, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            *counter.lock().unwrap() += 1;
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn guest_reaches_a_server_on_the_host_loopback_when_allowed() {
    let (port, hits) = http_server("hello from the host\n");
    let out = Capture::default();
    let err = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            &format!(
                "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default; \
                 cat /etc/resolv.conf; nslookup localhost | grep -A1 'Name:'; \
                 wget -q -O - http://10.0.2.2:{port}/"
            ),
        ])
        .network(Networking::new().policy(Policy::with_host_loopback()))
        .stdout(out.clone())
        .stderr(err.clone())
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = out.text();
    assert_eq!(status.code(), 0, "stdout: {text}\nstderr: {}", err.text());
    assert!(text.contains("inet 10.0.2.15/24"), "{text}");
    assert!(text.contains("default via 10.0.2.2"), "{text}");
    assert!(text.contains("nameserver 10.0.2.3"), "{text}");
    // Resolved by the host through the DNS forwarder.
    assert!(
        text.contains("Name:\tlocalhost\nAddress: 127.0.0.1"),
        "{text}"
    );
    assert!(text.ends_with("hello from the host\n"), "{text}");
    assert_eq!(*hits.lock().unwrap(), 1);
}

#[test]
fn the_default_policy_denies_the_host_loopback() {
    let (port, hits) = http_server("secret\n");
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            &format!("wget -q -T 5 -O - http://10.0.2.2:{port}/ || echo refused"),
        ])
        .network(Networking::new())
        .stdout(out.clone())
        .stderr(Capture::default())
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), "refused\n");
    assert_eq!(*hits.lock().unwrap(), 0);
}

#[test]
fn without_networking_the_guest_has_only_loopback() {
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command(["sh", "-c", "ls /sys/class/net"])
        .stdout(out.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), "lo\n");
}

#[test]
fn a_forward_reaches_httpd_in_the_guest() {
    // Port 0: the host picks a free port, and the network says which.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let networking = Networking::new()
        .forward(Forward::tcp(0, 8080))
        .on_bound(move |forwards| {
            let _ = bound_tx.send(forwards.to_vec());
        });
    let rt = runtime();
    let container = rt
        .container(busybox())
        .command([
            "sh",
            "-c",
            "mkdir /www && echo 'hello from the guest' > /www/index.html && \
             exec httpd -f -p 8080 -h /www",
        ])
        .network(networking)
        .stdout(Capture::default())
        .timeout(Duration::from_secs(300));
    let stop = container.stop_handle();
    let client = std::thread::spawn(move || {
        let forwards = bound_rx.recv().expect("the forwards are reported");
        assert_eq!(forwards.len(), 1);
        assert_eq!(forwards[0].forward.guest_port, 8080);
        let addr = forwards[0].host;
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        let port = addr.port();
        // The listener is bound before boot; connections before httpd listens
        // are reset, so retry until the guest answers.
        let deadline = Instant::now() + Duration::from_secs(120);
        let result = loop {
            let attempt = (|| -> std::io::Result<String> {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(30)))?;
                s.write_all(b"GET /index.html HTTP/1.0\r\nHost: spin\r\n\r\n")?;
                s.shutdown(Shutdown::Write)?;
                let mut reply = String::new();
                s.read_to_string(&mut reply)?;
                Ok(reply)
            })();
            match attempt {
                Ok(reply) if reply.starts_with("HTTP/1.") => break Ok(reply),
                other if Instant::now() > deadline => break Err(format!("{other:?}")),
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        stop.stop();
        result
    });
    let status = container.run().unwrap_or_else(|e| panic!("{e}"));
    let reply = client.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        reply.lines().next().unwrap_or("").ends_with(" 200 OK"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\nhello from the guest\n"), "{reply}");
    assert!(status.stopped());
}

#[test]
fn a_host_port_in_use_is_an_error_before_boot() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Capture::default();
    let result = runtime()
        .container(busybox())
        .command(["echo", "booted"])
        .network(Networking::new().forward(Forward::tcp(port, 80)))
        .stdout(out.clone())
        .run();
    match result {
        Err(Error::Network(e)) => assert!(e.to_string().contains(&port.to_string()), "{e}"),
        other => panic!("expected a network error, got {other:?}"),
    }
    assert_eq!(out.text(), "", "the guest must not have started");
}
