//! What the operator asks the gateway: its admin listener, its reload
//! command, its metrics, and requests to its public listener.

use super::*;
use crate::harness::Abort;

impl crate::Drill {
    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> Option<Response> {
        try_request(
            admin_addr(&self.stack),
            "GET",
            path,
            &[],
            b"",
            Duration::from_secs(5),
        )
        .ok()
    }

    /// GET on the admin listener, as JSON (null when there is no answer).
    pub fn admin_json(&self, path: &str) -> Value {
        get_json(admin_addr(&self.stack), path, &[])
    }

    /// POST /reload on the admin listener; aborts unless it was applied (or
    /// unchanged, when the file watcher got there first).
    pub fn gateway_reload(&self) -> Result<(), Abort> {
        let answer = try_request(
            admin_addr(&self.stack),
            "POST",
            "/reload",
            &[],
            b"",
            Duration::from_secs(10),
        );
        let body = answer
            .as_ref()
            .map(Response::text)
            .unwrap_or_else(|e| e.clone());
        let result = serde_json::from_str::<Value>(&body)
            .ok()
            .map(|v| v["result"].clone());
        match result.as_ref().and_then(Value::as_str) {
            Some("applied" | "unchanged") => {
                self.run.ok(format!("POST /reload: {body}"));
                Ok(())
            }
            _ => self.run.abort(format!("POST /reload: {body}")),
        }
    }

    /// `stella-gateway reload --admin URL`, the operator's command.
    pub fn reload_command(&self) -> Result<(), Abort> {
        let out = self.command_output(Command::new(self.run.binary("stella-gateway")).args([
            "reload",
            "--admin",
            &self.stack.admin(),
        ]))?;
        self.run
            .ok(format!("stella-gateway reload: {}", out.trim()));
        Ok(())
    }

    /// The sum of the samples of `name` with these labels on /metrics (0
    /// when absent or when the admin listener does not answer).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .and_then(|m| m.value(name, labels))
            .unwrap_or(0.0)
    }

    pub fn metrics(&self) -> Option<Metrics> {
        let r = self.admin_get("/metrics")?;
        (r.status == 200).then(|| Metrics::parse(&r.text()))
    }

    /// The status of one request to the public listener (0: no answer).
    pub fn status(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
        status_at(gw_addr(&self.stack), method, path, headers)
    }

    /// The status of a GET with a Bearer token.
    pub fn status_with(&self, path: &str, token: &str) -> u16 {
        let auth = format!("Bearer {token}");
        self.status("GET", path, &[("Authorization", &auth)])
    }
}
