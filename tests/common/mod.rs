//! Shared test harness: a real `trainbox` process on an ephemeral loopback
//! port, job trees on disk, an HTTP client, and independent ZIP readers.
#![allow(dead_code, clippy::disallowed_methods)] // fixtures live on the ambient filesystem

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_trainbox");

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "trainbox-test-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes `contents` at `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// Deterministic bytes that look like float32 tensors.
pub fn floats(len: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4);
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let v = (x as f32 / u32::MAX as f32 - 0.5) * 0.2;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A job with a model directory in the layout of DESIGN §5.
pub fn make_job(root: &Path, id: &str) -> PathBuf {
    let job = root.join("jobs").join(id);
    write(
        &job,
        "training.log",
        "step 1 loss 0.9\nstep 2 loss 0.8\n".repeat(200),
    );
    write(
        &job,
        "progress.json",
        r#"{"step": 200, "total_steps": 400, "loss": 0.41, "epoch": 1.0, "learning_rate": 0.01}"#,
    );
    write(
        &job,
        "metrics.jsonl",
        "{\"step\": 100, \"loss\": 0.6}\n{\"step\": 200, \"loss\": 0.41}\n",
    );
    write(
        &job,
        "model/config.json",
        r#"{"model_type": "test", "hidden_size": 64}"#,
    );
    write(&job, "model/model.safetensors", floats(300_000, 1));
    write(
        &job,
        "model/tokenizer.json",
        "{\"vocab\": {\"a\": 1}}".repeat(2000),
    );
    write(
        &job,
        "model/checkpoint-100/model.safetensors",
        floats(100_000, 2),
    );
    write(
        &job,
        "model/checkpoint-100/trainer_state.json",
        r#"{"global_step": 100, "max_steps": 400, "log_history": [{"loss": 0.6, "step": 100}]}"#,
    );
    write(
        &job,
        "model/checkpoint-200/model.safetensors",
        floats(100_000, 3),
    );
    write(
        &job,
        "model/checkpoint-200/trainer_state.json",
        r#"{"global_step": 200, "max_steps": 400, "log_history": [{"loss": 0.41, "step": 200}]}"#,
    );
    write(&job, "model/epoch=1-step=150.ckpt", floats(50_000, 4));
    write(
        &job,
        "model/tmp-checkpoint-300/model.safetensors",
        floats(10, 5),
    );
    // Finished writing a while ago: complete (a checkpoint counts once it
    // has settled for a few seconds).
    for finished in ["checkpoint-100", "checkpoint-200", "epoch=1-step=150.ckpt"] {
        age(&job.join("model").join(finished));
    }
    job
}

/// Moves the modification time of `path` (and everything under it) a
/// minute back, as if a trainer had finished writing it then.
pub fn age(path: &Path) {
    let then = std::time::SystemTime::now() - Duration::from_secs(60);
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            age(&entry.unwrap().path());
        }
        fs::File::open(path).unwrap().set_modified(then).unwrap();
    } else {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(then)
            .unwrap();
    }
}

/// A running server; killed on drop. Its stderr is collected in `log`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `trainbox serve --root root` on an ephemeral port plus `args`.
    pub fn start(root: &Path, args: &[&str]) -> Server {
        Server::start_with(root, args, &[])
    }

    pub fn start_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_custom(root, args, env, |_| {})
    }

    /// Like `start`, run by a command such as `ip netns exec NAME`.
    pub fn start_prefixed(prefix: &[&str], root: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new(prefix[0]);
        cmd.args(&prefix[1..]).arg(BIN);
        Server::spawn(cmd, root, args, &[], |_| {})
    }

    /// Like `start_with`, with a last say over the command (rlimits, say).
    pub fn start_custom(
        root: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        Server::spawn(Command::new(BIN), root, args, env, configure)
    }

    fn spawn(
        mut cmd: Command,
        root: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        cmd.arg("serve").arg("--root").arg(root);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start trainbox");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(addr.to_owned());
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Server {
            child,
            addr: addr.parse().unwrap(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// True once the server's log holds `text` (within a few seconds: the
    /// log is read by a thread of ours, a little behind the server).
    pub fn logged(&self, text: &str) -> bool {
        eventually(Duration::from_secs(5), || self.log().contains(text))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .expect("a detail string")
            .to_owned()
    }
}

fn collect(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Reply {
    get_with(url, &[])
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    collect(request.call().expect("request completes"))
}

pub fn head(url: &str) -> Reply {
    collect(agent().head(url).call().expect("request completes"))
}

/// Starts a job from `recipe` (no params); its id.
pub fn start_recipe(server: &Server, recipe: &str) -> String {
    let reply = post(
        &server.url("/api/training/jobs"),
        &serde_json::json!({ "recipe": recipe }).to_string(),
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_owned()
}

pub fn delete(url: &str) -> Reply {
    collect(agent().delete(url).call().expect("request completes"))
}

pub fn post(url: &str, body: &str) -> Reply {
    post_with(url, body, &[])
}

pub fn post_with(url: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    collect(request.send(body).expect("request completes"))
}

/// Sends bytes exactly as given (for targets no URL type would accept)
/// and reads one response, closing the connection.
pub fn raw(addr: SocketAddr, request_head: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request_head.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_response(&bytes)
}

pub fn raw_get(addr: SocketAddr, target: &str) -> Reply {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

pub fn parse_response(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    // A HEAD answer announces chunking but has no body.
    if !body.is_empty()
        && headers
            .get("transfer-encoding")
            .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("a chunk size line in {:?}", String::from_utf8_lossy(bytes)));
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).unwrap(), 16).unwrap();
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Every regular file under `dir` (following symlinks that stay inside),
/// by path relative to `dir`, as sha256 — what an archive of `dir` must hold.
pub fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with("tmp-") {
                    stack.push(path);
                }
            } else if path.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, sha256(&fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// The members of a ZIP as read by the zip crate, by name, as sha256.
pub fn zip_hashes(archive: &[u8]) -> BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("zip crate opens it");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .expect("zip crate: CRC and length check out");
        out.insert(
            file.name().expect("UTF-8 name").into_owned(),
            sha256(&bytes),
        );
    }
    out
}

/// `unzip -t` on the archive: true when it reports no errors.
pub fn unzip_test(path: &Path) -> bool {
    let out = Command::new("unzip")
        .arg("-tqq")
        .arg(path)
        .output()
        .expect("unzip installed");
    if !out.status.success() {
        eprintln!(
            "unzip -t: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Python's zipfile: members by name as sha256, after `testzip()` passed.
pub fn python_hashes(path: &Path) -> BTreeMap<String, String> {
    let script = r#"
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
assert bad is None, f"bad member {bad}"
out = {}
for info in z.infolist():
    h = hashlib.sha256()
    with z.open(info) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out[info.filename] = h.hexdigest()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 installed");
    assert!(
        out.status.success(),
        "python zipfile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Reads an archive with all three readers and checks each against `expected`.
pub fn assert_archive_matches(archive: &[u8], expected: &BTreeMap<String, String>, scratch: &Path) {
    assert_eq!(&zip_hashes(archive), expected, "zip crate");
    let path = scratch.join(format!("check-{}.zip", sha256(archive)));
    fs::write(&path, archive).unwrap();
    assert!(unzip_test(&path), "unzip -t");
    assert_eq!(&python_hashes(&path), expected, "python zipfile");
    let _ = fs::remove_file(path);
}

/// Polls `check` until it is true or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The `Content-Length` of a response head given as text.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length header")
        .trim()
        .parse()
        .expect("a number")
}

/// Shrinks a client's receive buffer to `size` bytes, so that a download it
/// stops reading fills the buffers quickly and the server's writes stall.
/// (With 4 KiB, under the loopback MSS, the window never reopens by more
/// than a probe's worth and draining it afterwards takes minutes; with
/// 64 KiB it drains at once. Much larger, and the kernel keeps making room
/// bit by bit, so the server's writes never stall for a whole timeout.)
pub fn small_receive_buffer(stream: &TcpStream, size: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads one c_int.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Connects with a receive buffer of `size` bytes set before the handshake,
/// so the window the server sees is small from the start (set afterwards,
/// the kernel may already have offered more).
pub fn connect_with_receive_buffer(addr: SocketAddr, size: libc::c_int) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}");
    };
    // SAFETY: a fresh socket we own; setsockopt reads one c_int; connect
    // reads one sockaddr_in; the descriptor goes to the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// The cgroup v2 mount (`/sys/fs/cgroup`, or `.../unified` on hybrid hosts).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2").then_some(())?;
        Some(PathBuf::from(before.split_whitespace().nth(4)?))
    })
}

/// A cgroup of the test's own, killed and removed on drop.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(tag: &str) -> Result<TestCgroup, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let mount = cgroup2_mount().ok_or("no cgroup v2 mount")?;
        let dir = mount.join(format!("trainbox-test-{tag}-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        Ok(TestCgroup(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Deepest first; whatever is left is killed.
        let mut dirs = Vec::new();
        let mut stack = vec![self.0.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
            dirs.push(dir);
        }
        for dir in dirs.iter().rev() {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
