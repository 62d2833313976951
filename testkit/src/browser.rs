//! [`Browser`]: a page file loaded in headless Chromium, as a person's browser would run it, and
//! what came of it ([`LoadedPage`]): the DOM after the page's scripts ran, the console messages,
//! a screenshot. [`Element`] reads elements back from the DOM as Chromium serialises it, so a
//! test can check what a page drew without pixels.
//!
//! Chromium comes from the system's packages (`scripts/test` installs it when missing); a test
//! that needs it fails, saying so, rather than skipping.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Headless Chromium, found on PATH (`chromium`, `chromium-browser`, `google-chrome`) or named
/// by `CIQ_CHROMIUM`.
pub struct Browser {
    binary: PathBuf,
}

/// How to load a page; [`PageLoad::default`] suits a report page.
#[derive(Debug, Clone)]
pub struct PageLoad {
    /// The URL fragment, without `#` (e.g. `attempt=17`).
    pub fragment: Option<String>,
    /// Where to write a PNG of the window, if anywhere.
    pub screenshot: Option<PathBuf>,
    /// The window's size in CSS pixels.
    pub window: (u32, u32),
    /// Virtual time the page may use for timers after loading (it passes at once when idle).
    pub virtual_time: Duration,
    /// How long Chromium may take in all before it is killed and the test fails.
    pub timeout: Duration,
}

impl Default for PageLoad {
    fn default() -> Self {
        Self {
            fragment: None,
            screenshot: None,
            window: (1400, 1000),
            virtual_time: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A page after Chromium loaded it and its scripts ran.
#[derive(Debug)]
pub struct LoadedPage {
    /// The DOM, serialised (`--dump-dom`).
    pub dom: String,
    /// Every console message and uncaught error, one per entry. Chromium's log does not say a
    /// message's level, so a page that logs nothing on purpose has none.
    pub console: Vec<String>,
    /// The screenshot, when one was asked for.
    pub screenshot: Option<PathBuf>,
    /// How long Chromium took, from start to exit.
    pub elapsed: Duration,
}

impl Browser {
    /// Finds Chromium, or fails the test saying how to install it.
    pub fn find() -> Self {
        if let Some(given) = std::env::var_os("CIQ_CHROMIUM") {
            return Self {
                binary: PathBuf::from(given),
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Self { binary: candidate };
                }
            }
        }
        panic!(
            "headless Chromium is needed for this test and is not installed: run scripts/test, \
             which installs it (apt-get install chromium), or name it in CIQ_CHROMIUM"
        );
    }

    /// Loads `page` (a file) in a fresh profile with no network, waits until its scripts ran,
    /// and returns the DOM and console; fails the test if Chromium fails or outlives
    /// `how.timeout`.
    pub fn load(&self, page: &Path, how: &PageLoad) -> LoadedPage {
        let page = page.canonicalize().expect("the page file exists");
        let profile = tempfile::tempdir().expect("a profile directory");
        let out = profile.path().join("dom.html");
        let err = profile.path().join("stderr.log");
        let mut url = file_url(&page);
        if let Some(fragment) = &how.fragment {
            url.push('#');
            url.push_str(fragment);
        }
        let mut command = Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg(format!(
                "--virtual-time-budget={}",
                how.virtual_time.as_millis()
            ))
            .arg(format!("--window-size={},{}", how.window.0, how.window.1));
        if let Some(shot) = &how.screenshot {
            command.arg(format!("--screenshot={}", shot.display()));
        }
        command
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("the DOM file"))
            .stderr(std::fs::File::create(&err).expect("the log file"))
            .process_group(0);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let group = Pid::from_raw(child.id() as i32);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for chromium") {
                break status;
            }
            if started.elapsed() > how.timeout {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait();
                panic!(
                    "chromium did not finish loading {url} within {:?}; its log:\n{}",
                    how.timeout,
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = started.elapsed();
        // Helpers Chromium started may outlive it; none may outlive the test.
        let _ = killpg(group, Signal::SIGKILL);
        let log = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(
            status.success(),
            "chromium failed loading {url} ({status}); its log:\n{log}"
        );
        let dom = std::fs::read_to_string(&out).expect("chromium's DOM is UTF-8");
        assert!(
            !dom.is_empty(),
            "chromium printed no DOM for {url}; its log:\n{log}"
        );
        if let Some(shot) = &how.screenshot {
            assert!(
                shot.is_file(),
                "chromium wrote no screenshot for {url}; its log:\n{log}"
            );
        }
        LoadedPage {
            dom,
            console: console_messages(&log),
            screenshot: how.screenshot.clone(),
            elapsed,
        }
    }
}

/// `file://` and the path, with the characters a URL cannot hold as they are percent-encoded.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(byte as char)
            }
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    url
}

/// The console lines of Chromium's log: `[…:INFO:CONSOLE:12] "message", source: … (12)`.
fn console_messages(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let at = line.find(":CONSOLE")?;
            let rest = &line[at..];
            let message = rest.find("] ").map(|end| &rest[end + 2..]).unwrap_or(rest);
            Some(message.to_owned())
        })
        .collect()
}

/// One element of a serialised DOM: its tag, its attributes (entities decoded) and where its
/// start tag is, enough to check what a page drew.
#[derive(Debug, Clone)]
pub struct Element {
    /// The tag name, lowercase.
    pub tag: String,
    /// Its attributes, values decoded.
    pub attrs: BTreeMap<String, String>,
    /// Where its start tag begins and ends (after its `>`) in the DOM text.
    pub at: usize,
    end: usize,
}

/// A piece of the DOM text: a start tag, an end tag, or text between them.
enum Token {
    Start(Element),
    End(String),
    Text(usize, usize),
}

/// The DOM text from `at` (inside an element of tag `inside`) on as tokens. Attribute values
/// are read whole (Chromium leaves `<` and `>` in them as they are), and the content of
/// `script` and `style` as one text.
fn tokens<'a>(dom: &'a str, mut at: usize, inside: &str) -> impl Iterator<Item = Token> + 'a {
    let mut raw_until = matches!(inside, "script" | "style").then(|| format!("</{inside}"));
    std::iter::from_fn(move || {
        if at >= dom.len() {
            return None;
        }
        if let Some(close) = raw_until.take() {
            let end = dom[at..].find(&close).map_or(dom.len(), |i| at + i);
            let text = Token::Text(at, end);
            at = end;
            return Some(text);
        }
        if !dom[at..].starts_with('<') {
            let end = dom[at..].find('<').map_or(dom.len(), |i| at + i);
            let text = Token::Text(at, end);
            at = end;
            return Some(text);
        }
        if let Some(rest) = dom[at..].strip_prefix("</") {
            let end = rest.find('>').map_or(dom.len(), |i| at + 2 + i + 1);
            let name = rest[..rest.find('>').unwrap_or(rest.len())]
                .trim()
                .to_ascii_lowercase();
            at = end;
            return Some(Token::End(name));
        }
        if dom[at..].starts_with("<!") {
            let end = dom[at..].find('>').map_or(dom.len(), |i| at + i + 1);
            let text = Token::Text(end, end);
            at = end;
            return Some(text);
        }
        let element = Element::parse(dom, at);
        at = element.end;
        if element.tag == "script" || element.tag == "style" {
            raw_until = Some(format!("</{}", element.tag));
        }
        Some(Token::Start(element))
    })
}

impl Element {
    /// Every element whose start tag holds `needle` (e.g. `data-lane="worker"`), or, for a
    /// needle like `<img`, every element of that tag; in order.
    pub fn all(dom: &str, needle: &str) -> Vec<Element> {
        let tag = needle.strip_prefix('<').map(str::to_ascii_lowercase);
        tokens(dom, 0, "")
            .filter_map(|token| match token {
                Token::Start(element) => Some(element),
                _ => None,
            })
            .filter(|element| match &tag {
                Some(tag) => &element.tag == tag,
                None => dom[element.at..element.end].contains(needle),
            })
            .collect()
    }

    /// The element with this `id`, if the DOM has one.
    pub fn by_id(dom: &str, id: &str) -> Option<Element> {
        Self::all(dom, &format!("id=\"{id}\"")).into_iter().next()
    }

    /// An attribute's value; fails the test naming the element when it has none.
    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("<{}> has no attribute `{name}`: {:?}", self.tag, self.attrs))
    }

    /// An attribute as a number.
    pub fn number(&self, name: &str) -> u64 {
        let value = self.attr(name);
        value
            .parse()
            .unwrap_or_else(|_| panic!("`{name}` of <{}> is `{value}`, not a number", self.tag))
    }

    /// The element's text, entities decoded: the text of everything up to its own end tag.
    pub fn text(&self, dom: &str) -> String {
        let mut text = String::new();
        let mut depth = 1;
        for token in tokens(dom, self.end, &self.tag) {
            match token {
                Token::Start(element) if element.tag == self.tag => depth += 1,
                Token::End(name) if name == self.tag => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Text(start, end) => text.push_str(&decode(&dom[start..end])),
                _ => {}
            }
        }
        text
    }

    /// The start tag at `open` (its `<`): name and attributes, up to its `>`.
    fn parse(dom: &str, open: usize) -> Element {
        let rest = &dom[open + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let tag = rest[..name_end].to_ascii_lowercase();
        let mut attrs = BTreeMap::new();
        let mut s = &rest[name_end..];
        loop {
            s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if s.is_empty() || s.starts_with('>') {
                break;
            }
            let key_end = s
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace())
                .unwrap_or(s.len());
            let key = s[..key_end].to_ascii_lowercase();
            s = &s[key_end..];
            if let Some(value) = s.strip_prefix("=\"") {
                let close = value.find('"').unwrap_or(value.len());
                attrs.insert(key, decode(&value[..close]));
                s = value.get(close + 1..).unwrap_or("");
            } else {
                attrs.insert(key, String::new());
            }
        }
        let end = dom.len() - s.len() + usize::from(s.starts_with('>'));
        Element {
            tag,
            attrs,
            at: open,
            end,
        }
    }
}

/// The entities Chromium's serialiser writes, decoded.
fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_read_back_attributes_and_text() {
        let dom = r#"<div class="lane" data-worker="a&amp;&quot;b<img x>" data-bars="3"><span>x</span> &lt;y&gt;<div>in</div>z</div><div data-bars="4"></div><script>if (a<b) "</div>";</script>"#;
        let lanes = Element::all(dom, "data-bars=");
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].attr("data-worker"), "a&\"b<img x>");
        assert_eq!(lanes[0].number("data-bars"), 3);
        assert_eq!(lanes[0].text(dom), "x <y>inz");
        assert_eq!(lanes[1].number("data-bars"), 4);
        assert_eq!(
            Element::all(dom, "<img").len(),
            0,
            "markup inside a value is not an element"
        );
        assert_eq!(Element::all(dom, "<div").len(), 3);
        let script = Element::all(dom, "<script").remove(0);
        assert_eq!(script.text(dom), "if (a<b) \"</div>\";");
    }

    #[test]
    fn console_lines_are_the_messages() {
        let log = "[1:1:1207/1.1:ERROR:dbus/bus.cc:405] Failed to connect\n\
                   [1:1:1207/1.2:INFO:CONSOLE:2] \"Uncaught TypeError: x\", source: file:///p.html (2)\n";
        assert_eq!(
            console_messages(log),
            vec!["\"Uncaught TypeError: x\", source: file:///p.html (2)".to_owned()]
        );
    }

    #[test]
    fn file_urls_encode_what_a_url_cannot_hold() {
        assert_eq!(
            file_url(Path::new("/tmp/a b#c/p.html")),
            "file:///tmp/a%20b%23c/p.html"
        );
    }
}
