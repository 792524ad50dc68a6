//! `quire serve` over real HTTP on loopback: pages, content types, revalidation, the site's 404
//! page, and nothing outside the site or hidden.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::harness::{VaultTest, isolated};

struct Server(std::process::Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(t: &VaultTest) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&t.root)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    isolated(&mut cmd, t.tmp.path());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    Server(child, addr)
}

/// Sends a raw request line (so encoded dots and odd paths reach the server as written); returns
/// the status, the headers (lowercased names) and the body.
fn get(addr: &str, target: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

#[test]
fn serve_answers_pages_safely() {
    let t = VaultTest::new();
    t.write("notes/Hello World.md", "# Hello World\n\nhi\n");
    t.write("notes/pic.png", "png bytes");
    t.write("notes/Pic.md", "![[pic.png]]\n");
    t.write(".env", "QUIRE_TOKEN=secret\n");
    let server = serve(&t);
    let addr = &server.1;

    let (status, head, body) = get(addr, "/notes/hello-world/", "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("Hello World") && html.contains("/__quire/live.js"),
        "the reload script is added when served"
    );
    assert!(
        !std::fs::read_to_string(t.path("_site/paper/notes/hello-world/index.html"))
            .unwrap()
            .contains("live.js"),
        "but never written"
    );

    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_owned();
    let (status, _, body) = get(
        addr,
        "/notes/hello-world/",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((status, body.len()), (304, 0), "revalidation");

    let (status, head, _) = get(addr, "/notes/hello-world", "");
    assert_eq!(status, 301);
    assert!(head.contains("location: hello-world/"), "{head}");

    let (status, head, body) = get(addr, "/notes/pic.png", "");
    assert_eq!((status, body.as_slice()), (200, b"png bytes".as_slice()));
    assert!(head.contains("content-type: image/png"));
    let (status, head, _) = get(addr, "/static/quire.css", "");
    assert_eq!(status, 200);
    assert!(head.contains("text/css"));

    for bad in [
        "/../quire.toml",
        "/%2e%2e/quire.toml",
        "/%2e%2e%2f%2e%2e%2fquire.toml",
        "/notes/..%2f..%2f..%2f.env",
        "/.quire-build.json",
        "/%2equire-build.json",
        "/.env",
        "/static/..%5c..%5cquire.toml",
        "/nothing-here/",
    ] {
        let (status, _, body) = get(addr, bad, "");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "{bad}");
        assert!(body.contains("Not found"), "{bad}: the site's own 404 page");
        assert!(
            !body.contains("QUIRE_TOKEN") && !body.contains("[site]") && !body.contains("stamp"),
            "{bad} leaked"
        );
    }
}

#[test]
fn serve_answers_no_other_name_and_no_other_page() {
    let t = VaultTest::new();
    t.write("notes/Secret.md", "# Secret\n\nthe combination is 1234\n");
    let server = serve(&t);
    let addr = &server.1;
    let port = addr.rsplit(':').next().unwrap();
    let (status, _, body) = get(addr, "/notes/secret/", "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("1234"));

    // A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /notes/secret/ HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(!text.contains("1234"));

    // A foreign page's fetch of a note.
    let (status, _, body) = get(
        addr,
        "/notes/secret/",
        "Origin: https://attacker.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\n",
    );
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains("1234"));
}
