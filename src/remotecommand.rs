//! Kubernetes' remote-command protocol over WebSocket (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io`), as `kubectl exec` speaks it: every binary message starts with a
//! channel byte (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize; v5 adds 255
//! "close channel"). The final status is a `Status` object on channel 3. Pure.

use serde_json::{json, Value};

pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// One message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// Split a message into its channel and payload.
pub fn parse(msg: &[u8]) -> Option<(u8, &[u8])> {
    msg.split_first().map(|(c, rest)| (*c, rest))
}

/// A terminal size message (channel 4): `{"Width": W, "Height": H}`.
pub fn parse_size(msg: &[u8]) -> Option<(u32, u32)> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    Some((u32::try_from(v["Width"].as_u64()?).ok()?, u32::try_from(v["Height"].as_u64()?).ok()?))
}

/// The terminal size message for `width` columns and `height` rows.
pub fn size_message(width: u16, height: u16) -> Vec<u8> {
    frame(RESIZE, json!({"Width": width, "Height": height}).to_string().as_bytes())
}

/// The status sent on the error channel when the command ended with `code`.
pub fn exit_status(code: u32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A status for a command that could not run at all.
pub fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
}

/// The exit code a status on the error channel stands for (126 when the command could
/// not run, as kubectl reports).
pub fn exit_code(status: &Value) -> i32 {
    if status["status"] == "Success" {
        return 0;
    }
    status["details"]["causes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["reason"] == "ExitCode"))
        .and_then(|c| c["message"].as_str()?.parse().ok())
        .unwrap_or(126)
}

/// The exec request's parameters from its query string (`command` repeats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecParams {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
}

pub fn parse_query(query: &str) -> ExecParams {
    let mut p = ExecParams::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "command" => p.command.push(v.into_owned()),
            "container" => p.container = Some(v.into_owned()),
            "stdin" => p.stdin = v == "true" || v == "1",
            "tty" => p.tty = v == "true" || v == "1",
            _ => {}
        }
    }
    p
}

/// The query string for `p` (what orchctl sends).
pub fn to_query(p: &ExecParams) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in &p.command {
        q.append_pair("command", c);
    }
    if let Some(c) = &p.container {
        q.append_pair("container", c);
    }
    q.append_pair("stdin", &p.stdin.to_string());
    q.append_pair("stdout", "true");
    q.append_pair("stderr", "true");
    q.append_pair("tty", &p.tty.to_string());
    q.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_queries_round_trip() {
        assert_eq!(parse(&frame(STDOUT, b"hi")), Some((STDOUT, &b"hi"[..])));
        assert_eq!(parse(&[]), None);
        let p = ExecParams { command: vec!["sh".into(), "-c".into(), "echo a&b".into()], container: Some("c".into()), stdin: true, tty: false };
        assert_eq!(parse_query(&to_query(&p)), p);
    }

    #[test]
    fn exit_codes_travel_in_the_status() {
        assert_eq!(exit_code(&exit_status(0)), 0);
        assert_eq!(exit_code(&exit_status(7)), 7);
        assert_eq!(exit_code(&failure("no such container")), 126);
    }

    #[test]
    fn terminal_sizes_are_width_and_height() {
        let m = size_message(120, 40);
        assert_eq!(parse(&m).map(|(c, _)| c), Some(RESIZE));
        assert_eq!(parse_size(&m[1..]), Some((120, 40)));
        assert_eq!(parse_size(br#"{"Width": 80}"#), None);
        assert_eq!(parse_size(b"junk"), None);
    }
}
