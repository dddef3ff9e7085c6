//! Just enough of the W3C WebDriver protocol to drive Debian's chromium
//! through chromedriver from a test: open a page, find elements, click,
//! drag with pointer actions, run a script, take a screenshot.
//!
//! Plain HTTP/1.1 + JSON over a `TcpStream` (the same client as the node
//! status requests), so the browser test adds no dependency to the build.
//!
//! Invariant: chromedriver (and with it the browser) is killed by its pid
//! when [`Browser`] drops.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_tcp_port, http, http_within, wait_for};

/// Starting a browser on a loaded two-core machine takes a while.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether chromium and chromedriver are installed.
pub fn available() -> Result<(), String> {
    for bin in ["chromium", "chromedriver"] {
        let ok = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "{bin} is not installed (apt-get install chromium chromium-driver)"
            ));
        }
    }
    Ok(())
}

/// Whether the browser test `test` can run: under `CI=true` a missing
/// chromium or chromedriver fails the test; elsewhere it is skipped with a
/// message.
pub fn prerequisites(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("browser test prerequisite missing under CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

/// A headless chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session with a window
    /// of `width` x `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_tcp_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        assert!(up, "chromedriver did not listen");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (code, text) = http_within(
            DRIVER_TIMEOUT,
            self.port,
            method,
            path,
            body.as_deref(),
            &[],
        )
        .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(code == 200, "{method} {path}: {code} {text}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Navigates to `url`.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let body = json!({ "using": "css selector", "value": css }).to_string();
        let (code, text) = http_within(
            DRIVER_TIMEOUT,
            self.port,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(&body),
            &[],
        )?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).ok()?;
        v["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Clicks an element.
    pub fn click(&self, element: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Drags with the mouse from an element's centre by `dx` pixels.
    pub fn drag(&self, element: &str, dx: i64) {
        let origin = json!({ ELEMENT: element });
        self.session_call(
            "POST",
            "/actions",
            Some(json!({ "actions": [{
                "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pointerMove", "origin": origin, "x": 0, "y": 0 },
                    { "type": "pointerDown", "button": 0 },
                    { "type": "pause", "duration": 50 },
                    { "type": "pointerMove", "origin": "pointer", "x": dx, "y": 0, "duration": 150 },
                    { "type": "pointerUp", "button": 0 }
                ]
            }]})),
        );
        self.session_call("DELETE", "/actions", None);
    }

    /// Runs `script` (a function body; `return` gives the value).
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.session_call("GET", "/screenshot", None);
        let png = base64_decode(v.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
                &[],
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
