//! Test harness: finds (or builds) the `easyisp-central` binary, creates a tenant with the
//! CLI, starts `serve` on a free loopback port and talks JSON to it. Every response body is
//! checked for password fields and known plaintext passwords.

use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub const ADMIN_PASSWORD: &str = "admin-Secret-pass-1";
/// Plaintext passwords the tests use; none may ever appear in a response.
pub const KNOWN_PASSWORDS: &[&str] = &[
    ADMIN_PASSWORD,
    "Zebra-Lamp-42",
    "Other-Lamp-43",
    "staff-Secret-pass-2",
];

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}

fn is_fresh(binary: &Path, sources: SystemTime) -> bool {
    std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= sources)
}

/// The central binary: `target/<profile>/easyisp-central` when it is newer than central's
/// and protocol's sources (as after `cargo test --workspace`), else one built on demand into
/// a separate target directory (as trybuild does, to avoid cargo's lock on the outer build).
pub fn central_binary() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the workspace")
        .to_path_buf();
    let sources = newest_mtime(&workspace.join("central/src"))
        .max(newest_mtime(&workspace.join("protocol/src")))
        .max(newest_mtime(&workspace.join("mqtt/src")));
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target dir");
    let beside = profile_dir.join("easyisp-central");
    let own_target = target_dir.join("central-for-tests");
    let own = own_target.join("debug/easyisp-central");
    let path = if is_fresh(&beside, sources) {
        beside
    } else {
        if !is_fresh(&own, sources) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "-p",
                    "easyisp-central",
                    "--bin",
                    "easyisp-central",
                    "--target-dir",
                ])
                .arg(&own_target)
                .current_dir(&workspace)
                .status()
                .expect("running cargo build for easyisp-central");
            assert!(status.success(), "building easyisp-central failed");
        }
        own
    };
    *built = Some(path.clone());
    path
}

pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Response {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }

    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Fails the test if a JSON value has a key mentioning "password" or contains a known
/// plaintext password anywhere.
pub fn assert_no_password(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                assert!(
                    !key.to_ascii_lowercase().contains("password"),
                    "response has a password field: {value}"
                );
                assert_no_password(v);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_password),
        Value::String(s) => {
            for known in KNOWN_PASSWORDS {
                assert!(
                    !s.contains(known),
                    "response contains a plaintext password: {value}"
                );
            }
        }
        _ => {}
    }
}

pub struct Central {
    child: Child,
    /// `serve`'s arguments and extra environment, to restart it the same way.
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub base: String,
    /// The port of the managed MQTT broker (`serve --mqtt 127.0.0.1:PORT`).
    pub mqtt_port: u16,
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
    pub tenant: String,
}

impl Drop for Central {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `easyisp-central serve ARGS`, its stderr appended to `central.log` in `dir`.
fn spawn_serve(dir: &Path, args: &[String], env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("central.log"))
        .expect("log file");
    Command::new(central_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn easyisp-central serve")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Central {
    /// A server with one tenant ("acme", admin "admin") and default options.
    pub async fn start() -> Central {
        Central::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Central {
        Central::start_with_env(extra, &[]).await
    }

    /// Like `start_with`, with extra environment variables for `serve` (e.g.
    /// `EASYISP_BROKER_PASSWORD` for `--broker`).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Central {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let tenant = add_tenant(&data, "acme", "admin", Some("254"));
        let port = free_port();
        let mqtt_port = free_port();
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data.display().to_string(),
            "serve".into(),
            "--http".into(),
            format!("127.0.0.1:{port}"),
            "--mqtt".into(),
            format!("127.0.0.1:{mqtt_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn_serve(dir.path(), &args, &env);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        let central = Central {
            child,
            args,
            env,
            base: format!("http://127.0.0.1:{port}"),
            mqtt_port,
            dir,
            client,
            tenant,
        };
        central.wait_healthy().await;
        central
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/api/health", self.base))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "central did not become healthy: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills `serve` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `serve` again with the same arguments and data directory (after [`kill`]);
    /// its log continues in the same file.
    ///
    /// [`kill`]: Central::kill
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn_serve(self.dir.path(), &self.args, &self.env);
        self.wait_healthy().await;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("central.log")).unwrap_or_default()
    }

    /// Creates another tenant through the CLI while the server runs.
    pub fn add_tenant(&self, name: &str, admin: &str) -> String {
        add_tenant(&self.data_dir(), name, admin, None)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        // The API's description names the password fields requests carry; it holds no data.
        if path != "/api/openapi.json" {
            assert_no_password(&body);
        } else {
            let text = body.to_string();
            for known in KNOWN_PASSWORDS {
                assert!(!text.contains(known), "a password in the API description");
            }
        }
        if status != 405 {
            assert_eq!(
                headers
                    .get("x-content-type-options")
                    .and_then(|v| v.to_str().ok()),
                Some("nosniff"),
                "{method_path}",
                method_path = path
            );
        }
        Response {
            status,
            body,
            headers,
        }
    }

    /// Raw body (for malformed JSON and size limits).
    pub async fn call_raw(&self, path: &str, token: &str, body: Vec<u8>) -> Response {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            body,
            headers,
        }
    }

    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> Response {
        self.call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"tenant": tenant, "username": username, "password": password})),
        )
        .await
    }

    /// Logs in as the admin of the default tenant.
    pub async fn admin(&self) -> String {
        let r = self.login(&self.tenant, "admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }

    /// Creates an operator with `role` and returns a token for it.
    pub async fn operator(&self, admin: &str, username: &str, role: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/operators",
                Some(admin),
                Some(
                    json!({"username": username, "password": "staff-Secret-pass-2", "role": role}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self
            .login(&self.tenant, username, "staff-Secret-pass-2")
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn put_empty(&self, path: &str, token: &str) -> Response {
        self.call(Method::PUT, path, Some(token), None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A package, a router and returns their ids.
    pub async fn package_and_router(&self, token: &str) -> (String, String) {
        let p = self
            .post("/api/packages", token, json!({"name": "10 Mbps Home", "price": 2000, "downloadSpeed": 10, "uploadSpeed": 5, "validityDays": 30}))
            .await;
        assert_eq!(p.status, 201, "{}", p.body);
        let r = self
            .post(
                "/api/routers",
                token,
                json!({"name": "Router 1", "ipAddress": "192.168.1.1"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        (p.id(), r.id())
    }

    pub async fn customer(&self, token: &str, username: &str, extra: Value) -> Response {
        let mut body = json!({"username": username, "password": "Zebra-Lamp-42", "name": format!("Name of {username}")});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/customers", token, body).await
    }
}

/// Runs `easyisp-central tenant add` and returns the printed tenant id.
pub fn add_tenant(data: &Path, name: &str, admin: &str, calling_code: Option<&str>) -> String {
    let mut cmd = Command::new(central_binary());
    cmd.arg("--data-dir")
        .arg(data)
        .args(["tenant", "add", "--name", name, "--admin", admin]);
    if let Some(code) = calling_code {
        cmd.args(["--calling-code", code]);
    }
    let out = cmd
        .env("EASYISP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("run tenant add");
    assert!(
        out.status.success(),
        "tenant add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 36, "tenant id printed: {id:?}");
    id
}
