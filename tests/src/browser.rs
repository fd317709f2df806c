//! A real headless Chromium for the web UI's tests (issues #13/#14): Debian's `chromium`
//! driven through its `chromedriver` over WebDriver with `fantoccini`. Both are installed
//! by `deploy/local/browser-deps`, axe-core (npm, `tests/browser`) too.
//!
//! - One chromedriver per test binary (a process-wide `OnceLock`), on a port it picks
//!   itself, ready once its `/status` says so (a generous deadline: the machine is
//!   loaded). It runs in a process group of its own under a small shell that ends the
//!   group when its stdin — our pipe — closes, so it and every Chromium it started go
//!   with the test process however that ends.
//! - A fresh Chromium per test ([`Browser::start`]) with its own `--user-data-dir`: no
//!   cookie, storage or cache crosses tests. Its session is deleted when the [`Browser`]
//!   is dropped, from a panicking test too (the test's runtime may be gone by then, so
//!   the delete is a plain blocking request).
//! - Every wait polls a condition until [`DEADLINE`] and says what it waited for when it
//!   gives up; nothing sleeps and hopes.
//! - Fields and buttons are found the way a person finds them — by their label or their
//!   text — so a page test reads like what it checks, and a control without a label is
//!   hard to use here too (axe says so as well).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::oidc::Provider;

/// Every wait on the browser: generous, for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(150);
/// The window (and so screenshot) width, and the least height.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;
/// A full-page screenshot grows the window to the page's height, up to this.
const MAX_HEIGHT: u32 = 8000;
/// What WebDriver calls an element in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium flags of every test session (the profile directory comes on top).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
    "--lang=en-US",
];

fn chromium_path() -> String {
    std::env::var("TOLLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn chromedriver_path() -> String {
    std::env::var("TOLLGATE_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// The chromedriver of this test binary.
struct Driver {
    /// `127.0.0.1:<port>`
    addr: String,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

fn driver() -> anyhow::Result<&'static Driver> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    DRIVER
        .get_or_init(|| Driver::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("starting chromedriver: {e}"))
}

impl Driver {
    fn start() -> anyhow::Result<Self> {
        let path = chromedriver_path();
        if !Path::new(&path).exists() || !Path::new(&chromium_path()).exists() {
            bail!(
                "{path} or {} is missing: run deploy/local/browser-deps (Debian: apt-get install chromium chromium-driver)",
                chromium_path()
            );
        }
        // The shell waits on its stdin (our pipe, closed when this process ends however it
        // ends) and then stops chromedriver's process group — the Chromiums it started
        // too, which would otherwise outlive it: nothing outlives the test binary.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                r#"setsid "$0" --port=0 </dev/null & pid=$!; cat >/dev/null; kill -s TERM -- -"$pid" 2>/dev/null"#,
            )
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {path}"))?;
        let stdin = child.stdin.take().context("chromedriver stdin")?;
        let stdout = child.stdout.take().context("chromedriver stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // "ChromeDriver was started successfully on port 34567." then keep draining.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .map(|rest| rest.trim().trim_end_matches('.').to_owned())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(DEADLINE)
            .map_err(|_| anyhow!("chromedriver printed no port within {DEADLINE:?}"))?;
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let status = raw_http("GET", &addr, "/status");
            let ready = status
                .as_ref()
                .ok()
                .and_then(|body| serde_json::from_str::<Value>(body).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if started.elapsed() > DEADLINE {
                bail!("chromedriver at {addr} not ready within {DEADLINE:?}: {status:?}");
            }
            std::thread::sleep(POLL);
        }
        Ok(Self {
            addr,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        })
    }
}

/// One blocking HTTP/1.1 request to chromedriver; the response body. For readiness and
/// for deleting a session from `Drop`, where no async runtime may be left. chromedriver
/// keeps connections open whatever the request says, so the body is read by its length.
fn raw_http(method: &str, addr: &str, path: &str) -> std::io::Result<String> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    (&stream).write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut reader = BufReader::new(&stream);
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<u64>().ok();
        }
    }
    let mut body = String::new();
    match length {
        Some(n) => reader.take(n).read_to_string(&mut body)?,
        None => reader.read_to_string(&mut body)?,
    };
    Ok(body)
}

/// Polls `check` until it yields a value, for up to [`DEADLINE`]. An error counts as "not
/// yet" (a page mid-navigation answers scripts with errors); the last one is in the
/// message if the deadline passes.
pub async fn eventually<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut last = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if started.elapsed() > DEADLINE {
            return Err(match last {
                Some(e) => anyhow!("waited {DEADLINE:?} for {what}; last error: {e:#}"),
                None => anyhow!("waited {DEADLINE:?} for {what}"),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One axe-core finding: a rule the page breaks, and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The rule, e.g. `image-alt`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    pub help: String,
    pub help_url: String,
    pub nodes: Vec<ViolationNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationNode {
    /// CSS selectors of the element (more than one inside frames or shadow roots).
    pub target: Vec<Value>,
    pub html: String,
    pub failure_summary: Option<String>,
}

impl Violation {
    /// What the dashboard's tests refuse: `serious` or `critical`.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

/// The failure message for the serious and critical violations among `violations`, each
/// with all its nodes; `None` when there are none.
pub fn serious_report(page: &str, violations: &[Violation]) -> Option<String> {
    let serious: Vec<&Violation> = violations.iter().filter(|v| v.is_serious()).collect();
    if serious.is_empty() {
        return None;
    }
    let mut out = format!(
        "axe-core: {} serious or critical accessibility violation(s) on {page}:",
        serious.len()
    );
    for v in serious {
        out.push_str(&format!(
            "\n- {} ({}): {} <{}>",
            v.id,
            v.impact.as_deref().unwrap_or("?"),
            v.help,
            v.help_url
        ));
        for node in &v.nodes {
            let target: Vec<String> = node
                .target
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| t.to_string())
                })
                .collect();
            out.push_str(&format!("\n    at {}: {}", target.join(" > "), node.html));
            if let Some(summary) = &node.failure_summary {
                out.push_str(&format!("\n      {}", summary.replace('\n', "\n      ")));
            }
        }
    }
    Some(out)
}

/// axe-core's browser bundle, read once.
fn axe_source() -> anyhow::Result<&'static str> {
    static AXE: OnceLock<Result<String, String>> = OnceLock::new();
    AXE.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("browser/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "reading {}: {e} (run deploy/local/browser-deps: npm ci in tests/browser)",
                path.display()
            )
        })
    })
    .as_deref()
    .map_err(|e| anyhow!("{e}"))
}

/// Where screenshots go unless a test names a directory: `$TOLLGATE_UI_SCREENSHOTS`, or
/// `<target>/ui-screenshots` beside the test binary's `<target>/debug/deps/`.
pub fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TOLLGATE_UI_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("ui-screenshots")
}

/// What the locating script looks for.
#[derive(Clone, Copy)]
enum Target {
    /// A form control, by label, `aria-label`, `name` or `id`.
    Field,
    /// A button or a link, by its text, value, `aria-label` or `title`.
    Button,
}

/// Finds the one element named `name` (inside `scope`, a CSS selector, if given) and
/// returns it, or a list of what there is to choose from. Matching is on whitespace-
/// collapsed text: exact first, then ignoring case, then (for labels) as a prefix, as
/// long as exactly one element matches.
const LOCATE: &str = r#"
const [kind, name, scopeCss] = arguments;
const scope = scopeCss ? document.querySelector(scopeCss) : document;
if (!scope) return { error: `nothing matches the scope ${scopeCss}` };
const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
const ownText = (label) => {
  const copy = label.cloneNode(true);
  copy.querySelectorAll('input, select, textarea, button').forEach((c) => c.remove());
  return norm(copy.textContent);
};
let candidates = [];
if (kind === 'field') {
  const controls = scope.querySelectorAll('input:not([type=hidden]), textarea, select');
  for (const el of controls) {
    const names = [];
    for (const label of el.labels || []) names.push(ownText(label));
    names.push(norm(el.getAttribute('aria-label')));
    for (const id of (el.getAttribute('aria-labelledby') || '').split(/\s+/)) {
      const by = id && document.getElementById(id);
      if (by) names.push(norm(by.textContent));
    }
    candidates.push({ el, names: names.filter(Boolean), keys: [el.name, el.id].filter(Boolean) });
  }
} else {
  const buttons = scope.querySelectorAll(
    'button, input[type=submit], input[type=button], input[type=reset], a[href], [role=button], summary');
  for (const el of buttons) {
    if (!visible(el)) continue;
    const names = [norm(el.innerText), norm(el.value), norm(el.getAttribute('aria-label')),
      norm(el.getAttribute('title'))];
    candidates.push({ el, names: names.filter(Boolean), keys: [el.id].filter(Boolean) });
  }
}
const unique = (els) => [...new Set(els)];
const tries = [
  (c) => c.names.includes(name) || c.keys.includes(name),
  (c) => c.names.some((n) => n.toLowerCase() === name.toLowerCase()),
  (c) => kind === 'field' && c.names.some((n) => n.toLowerCase().startsWith(name.toLowerCase())),
];
for (const matches of tries) {
  const found = unique(candidates.filter(matches).map((c) => c.el));
  if (found.length === 1) return { element: found[0] };
  if (found.length > 1) {
    return { error: `${found.length} elements match "${name}": ` +
      found.map((el) => el.outerHTML.slice(0, 120)).join(' | ') };
  }
}
return { error: `nothing matches "${name}"; there are: ` +
  candidates.map((c) => c.names.concat(c.keys).join(' / ')).filter(Boolean).join('; ') };
"#;

/// One Chromium, signed in as nobody, on a profile of its own.
pub struct Browser {
    client: Client,
    session: String,
    driver: &'static Driver,
    screenshots: PathBuf,
    /// Removed after the session (and so Chromium) is gone.
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium even when the test panicked and its runtime is shutting down.
        let _ = raw_http(
            "DELETE",
            &self.driver.addr,
            &format!("/session/{}", self.session),
        );
    }
}

impl Browser {
    /// A new Chromium session; screenshots go to [`screenshot_dir`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_screenshots(screenshot_dir()).await
    }

    /// A new Chromium session whose screenshots go to `dir`.
    pub async fn start_with_screenshots(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let driver = driver()?;
        let profile = tempfile::Builder::new()
            .prefix("tollgate-chromium-")
            .tempdir()?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={WIDTH},{HEIGHT}"));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium_path(), "args": args}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{}", driver.addr))
            .await
            .context("opening a Chromium session")?;
        let session = client
            .session_id()
            .await?
            .context("chromedriver gave no session id")?;
        let browser = Self {
            client,
            session,
            driver,
            screenshots: dir.into(),
            _profile: profile,
        };
        browser
            .client
            .update_timeouts(TimeoutConfiguration::new(
                Some(DEADLINE),
                Some(DEADLINE),
                Some(Duration::ZERO),
            ))
            .await?;
        Ok(browser)
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`: absolute, or a path (`/keys?page=2`) on the current page's origin.
    /// Returns once the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let url = if url.starts_with('/') {
            self.client.current_url().await?.join(url)?.to_string()
        } else {
            url.to_owned()
        };
        self.client
            .goto(&url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The current URL.
    pub async fn url(&self) -> anyhow::Result<reqwest::Url> {
        Ok(reqwest::Url::parse(
            self.client.current_url().await?.as_str(),
        )?)
    }

    pub async fn title(&self) -> anyhow::Result<String> {
        Ok(self.client.title().await?)
    }

    /// What the page shows: the body's rendered text (hidden elements left out).
    pub async fn text(&self) -> anyhow::Result<String> {
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// The page's HTML as it is now.
    pub async fn html(&self) -> anyhow::Result<String> {
        Ok(self.client.source().await?)
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element matches {css}"))
    }

    /// Every element matching `css` (maybe none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    async fn locate(
        &self,
        target: Target,
        scope: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Element> {
        let kind = match target {
            Target::Field => "field",
            Target::Button => "button",
        };
        let found = self
            .client
            .execute(LOCATE, vec![json!(kind), json!(name), json!(scope)])
            .await?;
        if let Some(id) = found["element"][ELEMENT_KEY].as_str() {
            return Ok(Element::from_element_id(
                self.client.clone(),
                ElementRef::from(id.to_owned()),
            ));
        }
        let url = self.client.current_url().await?;
        bail!(
            "{kind} \"{name}\" on {url}: {}",
            found["error"].as_str().unwrap_or("not found")
        )
    }

    /// Types `value` into the field labelled `field` (or named, or with that id),
    /// replacing what it held; picks the option so labelled (or with that value) in a
    /// `<select>`. Date and time inputs get the value set directly (typing into them is
    /// locale-dependent).
    pub async fn fill(&self, field: &str, value: &str) -> anyhow::Result<()> {
        self.fill_in(None, field, value).await
    }

    /// As [`Self::fill`], looking only inside the element matching `scope` (CSS).
    pub async fn fill_in(
        &self,
        scope: Option<&str>,
        field: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        let element = self.locate(Target::Field, scope, field).await?;
        let tag = element.tag_name().await?.to_ascii_lowercase();
        let kind = element.attr("type").await?.unwrap_or_default();
        if tag == "select" {
            if element.select_by_label(value).await.is_err() {
                element
                    .select_by_value(value)
                    .await
                    .with_context(|| format!("no option \"{value}\" in {field}"))?;
            }
            return Ok(());
        }
        match kind.to_ascii_lowercase().as_str() {
            "checkbox" | "radio" => bail!("{field} is a {kind}: use check()"),
            "date" | "datetime-local" | "time" | "month" | "week" | "color" | "range" => {
                self.client
                    .execute(
                        "const [el, v] = arguments; el.value = v;\
                         el.dispatchEvent(new Event('input', {bubbles: true}));\
                         el.dispatchEvent(new Event('change', {bubbles: true}));",
                        vec![serde_json::to_value(&element)?, json!(value)],
                    )
                    .await?;
            }
            _ => {
                element.clear().await?;
                element.send_keys(value).await?;
            }
        }
        let now = element.prop("value").await?.unwrap_or_default();
        if now != value {
            bail!("{field} holds {now:?} after filling in {value:?}");
        }
        Ok(())
    }

    /// Ticks (`on`) or clears the checkbox labelled `field`, or picks that radio button.
    pub async fn check(&self, field: &str, on: bool) -> anyhow::Result<()> {
        let element = self.locate(Target::Field, None, field).await?;
        if element.is_selected().await? != on {
            element.click().await?;
        }
        if element.is_selected().await? != on {
            bail!(
                "{field} did not become {}",
                if on { "checked" } else { "unchecked" }
            );
        }
        Ok(())
    }

    /// Clicks the button or link whose text (or value, `aria-label`, `title`, id) is
    /// `text`. Does not wait for anything: see [`Self::submit`] for a click that loads a
    /// page.
    pub async fn click(&self, text: &str) -> anyhow::Result<()> {
        self.click_in(None, text).await
    }

    /// As [`Self::click`], looking only inside the element matching `scope` (CSS).
    pub async fn click_in(&self, scope: Option<&str>, text: &str) -> anyhow::Result<()> {
        let element = self.locate(Target::Button, scope, text).await?;
        element
            .click()
            .await
            .with_context(|| format!("clicking \"{text}\""))?;
        Ok(())
    }

    /// Clicks the button or link `text` and waits until the page it leads to (a form's
    /// answer, a redirect's end) has loaded.
    pub async fn submit(&self, text: &str) -> anyhow::Result<()> {
        self.submit_in(None, text).await
    }

    /// As [`Self::submit`], looking only inside the element matching `scope` (CSS).
    pub async fn submit_in(&self, scope: Option<&str>, text: &str) -> anyhow::Result<()> {
        let element = self.locate(Target::Button, scope, text).await?;
        // A mark on the old document: the new one does not have it.
        let mark = uuid::Uuid::now_v7().simple().to_string();
        self.client
            .execute(
                "window.__tollgateOldPage = arguments[0];",
                vec![json!(mark)],
            )
            .await?;
        element
            .click()
            .await
            .with_context(|| format!("clicking \"{text}\""))?;
        self.wait_for_new_page(&mark, &format!("the page \"{text}\" leads to"))
            .await
    }

    async fn wait_for_new_page(&self, mark: &str, what: &str) -> anyhow::Result<()> {
        eventually(what, async || {
            let state = self
                .client
                .execute(
                    "return window.__tollgateOldPage !== arguments[0] && document.readyState === 'complete';",
                    vec![json!(mark)],
                )
                .await?;
            Ok((state == json!(true)).then_some(()))
        })
        .await
    }

    /// Waits until `check` holds (errors count as "not yet").
    pub async fn wait_until(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        eventually(what, async || Ok(check().await?.then_some(()))).await
    }

    /// Waits until the page shows `needle`; the page's text then.
    pub async fn wait_for_text(&self, needle: &str) -> anyhow::Result<String> {
        let mut last = String::new();
        let found = eventually(&format!("the page to show {needle:?}"), async || {
            last = self.text().await?;
            Ok(last.contains(needle).then(|| last.clone()))
        })
        .await;
        found.map_err(|e| anyhow!("{e:#}\nthe page showed:\n{last}"))
    }

    /// Waits until an element matches `css`; the first one.
    pub async fn wait_for_css(&self, css: &str) -> anyhow::Result<Element> {
        eventually(&format!("an element matching {css}"), async || {
            Ok(self.find_all(css).await?.into_iter().next())
        })
        .await
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_for_gone(&self, css: &str) -> anyhow::Result<()> {
        self.wait_until(&format!("no element matching {css}"), async || {
            Ok(self.find_all(css).await?.is_empty())
        })
        .await
    }

    /// Waits until the current URL satisfies `test`, with the page loaded; the URL.
    pub async fn wait_for_url(
        &self,
        what: &str,
        test: impl Fn(&reqwest::Url) -> bool,
    ) -> anyhow::Result<reqwest::Url> {
        eventually(what, async || {
            let url = self.url().await?;
            let loaded = self
                .client
                .execute("return document.readyState === 'complete'", vec![])
                .await?;
            Ok((test(&url) && loaded == json!(true)).then_some(url))
        })
        .await
    }

    /// Signs `username` in at the control plane `control_url` through `provider`'s own
    /// login form, as a person would; returns once back at the control plane.
    pub async fn sign_in(
        &self,
        control_url: &str,
        provider: &Provider,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.sign_in_at(
            &format!("{}/auth/login", control_url.trim_end_matches('/')),
            provider,
            username,
            password,
        )
        .await
    }

    /// As [`Self::sign_in`], starting at `login_url` (e.g. `…/auth/login?org=acme`).
    pub async fn sign_in_at(
        &self,
        login_url: &str,
        provider: &Provider,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let login = reqwest::Url::parse(login_url)?;
        let control = login.origin();
        let issuer = reqwest::Url::parse(&provider.issuer)?.origin();
        self.goto(login_url).await?;
        // The provider's form, or straight back if this browser has a session there.
        let url = self
            .wait_for_url("the provider's login form, or the way back", |url| {
                url.origin() == issuer && url.path().starts_with("/interaction/")
                    || url.origin() == control && url.path() != login.path()
            })
            .await?;
        if url.origin() == issuer {
            self.wait_for_css("#username").await?;
            self.fill("username", username).await?;
            self.fill("password", password).await?;
            let mark = uuid::Uuid::now_v7().simple().to_string();
            self.client
                .execute(
                    "window.__tollgateOldPage = arguments[0];",
                    vec![json!(mark)],
                )
                .await?;
            self.find("#submit").await?.click().await?;
            self.wait_for_new_page(&mark, "the provider's answer to the login form")
                .await?;
        }
        // Back at the control plane, or still at the provider, which refused the password.
        let back = eventually("the way back to the control plane", async || {
            let url = self.url().await?;
            if url.origin() == issuer && !self.find_all("#error").await?.is_empty() {
                return Ok(Some(Err(self.text().await?)));
            }
            let loaded = self
                .client
                .execute("return document.readyState === 'complete'", vec![])
                .await?;
            Ok((url.origin() == control && loaded == json!(true)).then_some(Ok(url)))
        })
        .await;
        let back = match back {
            Ok(Ok(url)) => url,
            Ok(Err(refused)) => bail!("the provider refused {username}: {refused}"),
            Err(e) => bail!(
                "{e:#}; the page shows: {}",
                self.text().await.unwrap_or_default()
            ),
        };
        if back.path().starts_with("/auth/") {
            bail!(
                "the sign-in of {username} was refused at {back}: {}",
                self.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A PNG of the whole page (the window grows to the page's height for it) in the
    /// screenshot directory, as `<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.screenshots.clone();
        self.screenshot_to(&dir, name).await
    }

    /// As [`Self::screenshot`], into `dir`.
    pub async fn screenshot_to(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || name.starts_with('.')
        {
            bail!("screenshot name {name:?}: letters, digits, '-', '_' and '.' only");
        }
        let height = self
            .client
            .execute(
                "return Math.ceil(Math.max(document.documentElement.scrollHeight,\
                 document.body ? document.body.scrollHeight : 0));",
                vec![],
            )
            .await?
            .as_u64()
            .unwrap_or(u64::from(HEIGHT));
        let height = u32::try_from(height)
            .unwrap_or(MAX_HEIGHT)
            .clamp(HEIGHT, MAX_HEIGHT);
        self.client.set_window_size(WIDTH, height).await?;
        let png = self.client.screenshot().await;
        self.client.set_window_size(WIDTH, HEIGHT).await?;
        let png = png?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Runs axe-core on the current page (injected by WebDriver, so a page's CSP does
    /// not stand in its way); every violation, of any impact.
    pub async fn accessibility(&self) -> anyhow::Result<Vec<Violation>> {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await?;
        if loaded != json!(true) {
            self.client.execute(axe_source()?, vec![]).await?;
        }
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 axe.run(document, {resultTypes: ['violations']})\
                   .then((r) => done({violations: r.violations}))\
                   .catch((e) => done({error: String(e)}));",
                vec![],
            )
            .await?;
        if let Some(error) = result["error"].as_str() {
            bail!("axe.run failed: {error}");
        }
        serde_json::from_value(result["violations"].clone()).context("reading axe's violations")
    }

    /// Fails (panics, as an assert does) listing every serious or critical
    /// accessibility violation of the current page with its nodes; `page` names it.
    pub async fn assert_accessible(&self, page: &str) {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let violations = self
            .accessibility()
            .await
            .unwrap_or_else(|e| panic!("running axe-core on {page} ({url}): {e:#}"));
        if let Some(report) = serious_report(&format!("{page} ({url})"), &violations) {
            panic!("{report}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(id: &str, impact: &str) -> Violation {
        serde_json::from_value(json!({
            "id": id,
            "impact": impact,
            "help": "help text",
            "helpUrl": "https://example.invalid/rule",
            "description": "ignored",
            "nodes": [
                {"target": ["main > img"], "html": "<img src=x>", "failureSummary": "Fix any:\n  add alt"},
                {"target": [["iframe", "p"]], "html": "<p>", "failureSummary": null}
            ]
        }))
        .expect("a violation as axe writes it")
    }

    #[test]
    fn the_report_lists_serious_and_critical_violations_with_every_node() {
        let report = serious_report(
            "home",
            &[
                violation("image-alt", "critical"),
                violation("region", "moderate"),
                violation("html-has-lang", "serious"),
            ],
        )
        .expect("two count");
        assert!(report.contains("2 serious or critical"), "{report}");
        assert!(report.contains("image-alt (critical)"), "{report}");
        assert!(report.contains("html-has-lang (serious)"), "{report}");
        assert!(!report.contains("region"), "{report}");
        assert!(report.contains("at main > img: <img src=x>"), "{report}");
        assert!(report.contains("add alt"), "{report}");
        assert!(report.contains(r#"["iframe","p"]"#), "{report}");
    }

    #[test]
    fn minor_and_moderate_violations_make_no_report() {
        assert!(serious_report("home", &[violation("region", "moderate")]).is_none());
        assert!(serious_report("home", &[]).is_none());
    }
}
