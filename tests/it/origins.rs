//! SPEC §11 against the real daemon: no other web page can read the vault through it or act on
//! it. Each attack is made the way a browser would make it (the headers a browser sends for a
//! rebound name, a foreign page's `fetch`, a cross-site form, a cookie) and each is refused with
//! nothing read and nothing changed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{http, start, token, wait_until};
use crate::harness::{VaultTest, bundle};

const SECRET_TASK: &str = "call the bank about account 0042";

fn vault_with_a_private_task() -> VaultTest {
    let t = VaultTest::new();
    t.commit(
        &[(
            "03_NOTES/private.md",
            &format!("# Private\n\n- [ ] {SECRET_TASK}\n"),
        )],
        "a private note",
    );
    t
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_rebound_name_a_foreign_page_a_cross_site_form_and_a_cookie_read_and_change_nothing() {
    let t = vault_with_a_private_task();
    let d = start(&t);
    let port = d.addr.rsplit(':').next().unwrap().to_owned();
    wait_until("the task indexed", Duration::from_secs(30), || {
        let (_, _, body) = http(&d.addr, "GET", "/api/tasks", &[], b"");
        String::from_utf8_lossy(&body).contains(SECRET_TASK)
    });

    // The vault's own address and localhost are answered, without any CORS grant.
    for host in [d.addr.clone(), format!("localhost:{port}")] {
        let (status, headers, body) = http(&d.addr, "GET", "/api/tasks", &[("Host", &host)], b"");
        assert_eq!(status, 200, "{host}");
        assert!(String::from_utf8_lossy(&body).contains(SECRET_TASK));
        assert!(
            headers
                .iter()
                .all(|(k, _)| !k.starts_with("access-control-")),
            "{headers:?}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    }

    // DNS rebinding: the attacker's name now points at 127.0.0.1; the browser sends it as Host.
    let rebound = format!("attacker.example:{port}");
    for path in [
        "/api/tasks",
        "/api/missions",
        "/calendar.ics",
        "/site/paper/",
        "/api/events",
    ] {
        let (status, _, body) = http(&d.addr, "GET", path, &[("Host", &rebound)], b"");
        assert_eq!(status, 403, "{path}");
        assert_eq!(error_code(&body), "host_not_allowed", "{path}");
        assert!(!String::from_utf8_lossy(&body).contains(SECRET_TASK));
    }

    // A foreign page's fetch (CORS mode) and its `<script src>` (no-cors) of the API.
    let (status, headers, body) = http(
        &d.addr,
        "GET",
        "/api/tasks",
        &[
            ("Origin", "https://attacker.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "cors"),
        ],
        b"",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "origin_not_allowed")
    );
    assert!(!String::from_utf8_lossy(&body).contains(SECRET_TASK));
    assert!(
        headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-"))
    );
    let (status, _, body) = http(
        &d.addr,
        "GET",
        "/api/tasks",
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "no-cors"),
        ],
        b"",
    );
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET_TASK));
    // Another server on this machine (another port) is another origin too.
    let (status, _, _) = http(
        &d.addr,
        "GET",
        "/api/tasks",
        &[("Origin", "http://127.0.0.1:1")],
        b"",
    );
    assert_eq!(status, 403);

    // A CORS preflight is refused and grants nothing.
    let (status, headers, _) = http(
        &d.addr,
        "OPTIONS",
        "/api/contributions",
        &[
            ("Origin", "https://attacker.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        b"",
    );
    assert_eq!(status, 403);
    assert!(
        headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-"))
    );

    let head = t.head();
    let b = bundle(
        "csrf-1",
        json!([{ "op": "create", "path": "03_NOTES/pwned.md", "content": "# pwned\n" }]),
    );
    let body = serde_json::to_vec(&b).unwrap();
    // A cross-site form post, as a browser sends it: Origin, Sec-Fetch-*, a form content type.
    let (status, _, reply) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[
            ("Origin", "https://attacker.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    );
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (403, "origin_not_allowed")
    );
    // The same form from an old browser that sends no Origin still carries no token.
    let (status, _, reply) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!((status, error_code(&reply).as_str()), (401, "unauthorized"));
    // The right token, but in a cookie (which a browser would attach to a foreign page's request).
    let tok = token(&t);
    for cookie in [
        format!("QUIRE_TOKEN={tok}"),
        format!("token={tok}; Authorization=Bearer {tok}"),
    ] {
        let (status, _, reply) = http(
            &d.addr,
            "POST",
            "/api/contributions",
            &[("Cookie", &cookie), ("Content-Type", "application/json")],
            &body,
        );
        assert_eq!((status, error_code(&reply).as_str()), (401, "unauthorized"));
    }
    // A rebound name with the real token (a script that somehow had it) is refused by name.
    let bearer = format!("Bearer {tok}");
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Host", &rebound), ("Authorization", &bearer)],
        &body,
    );
    assert_eq!(status, 403);

    // Nothing changed: no commit, no bundle taken in, no receipt.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.head(), head);
    assert!(!t.exists("03_NOTES/pwned.md"));
    let (status, _, _) = http(&d.addr, "GET", "/api/contributions/csrf-1", &[], b"");
    assert_eq!(status, 404);

    // And the one way that works: the token in Authorization, from no foreign page.
    let (status, _, reply) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[
            ("Authorization", &bearer),
            ("Origin", &format!("http://{}", d.addr)),
        ],
        &body,
    );
    assert!(
        status == 200 || status == 202,
        "{status} {}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn a_proxy_name_is_answered_once_configured() {
    let t = VaultTest::new();
    let cfg = t.read("quire.toml");
    let cfg = if cfg.contains("hosts = []") {
        cfg.replace("hosts = []", "hosts = [\"quire.example.com\"]")
    } else {
        cfg.replace("[daemon]\n", "[daemon]\nhosts = [\"quire.example.com\"]\n")
    };
    t.commit(&[("quire.toml", &cfg)], "behind a proxy");
    let d = start(&t);
    for (host, origin, want) in [
        ("quire.example.com", "https://quire.example.com", 200),
        ("quire.example.com:443", "https://quire.example.com", 200),
        ("other.example.com", "https://other.example.com", 403),
        ("quire.example.com", "https://other.example.com", 403),
    ] {
        let (status, _, _) = http(
            &d.addr,
            "GET",
            "/healthz",
            &[("Host", host), ("Origin", origin)],
            b"",
        );
        assert_eq!(status, want, "{host} from {origin}");
    }
}
