//! `orchctl exec`: run a command in a pod's container through any node, over the same
//! remote-command WebSocket `kubectl exec` uses; stdin, stdout and stderr are streamed
//! and orchctl exits with the command's exit code.

use anyhow::{anyhow, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::remotecommand::{self as rc, ExecParams};

/// Whether standard input is a terminal (kubectl's condition for `-t`).
pub fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// The terminal's columns and rows, if standard output is one.
fn window_size() -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass and nothing else.
    let r = unsafe { nix::libc::ioctl(nix::libc::STDOUT_FILENO, nix::libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The local terminal in raw mode (keys go to the remote terminal as typed: no echo, no
/// line editing, ^C as a byte); the previous mode comes back on drop.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> anyhow::Result<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

/// Run the command; returns its exit code.
pub async fn exec(client: &crate::client::ApiClient, base: &str, ns: &str, pod: &str, params: &ExecParams) -> anyhow::Result<i32> {
    let ws_base = base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let url = format!("{ws_base}/api/v1/namespaces/{ns}/pods/{pod}/exec?{}", rc::to_query(params));
    let socket = match client.websocket(&url, &rc::PROTOCOLS).await {
        Ok(s) => s,
        Err(tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            bail!("{}", body["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {}", resp.status())));
        }
        Err(e) => return Err(anyhow!("{url}: {e}")),
    };
    let (mut tx, mut rx) = socket.split();
    // With a terminal: raw mode until the command ends (restored on drop), its size now
    // and whenever the window changes.
    let _raw = if params.tty { Some(RawTerminal::enter()?) } else { None };
    if params.tty {
        if let Some((w, h)) = window_size() {
            tx.send(Message::Binary(rc::size_message(w, h).into())).await?;
        }
    }
    let input = params.stdin.then(|| {
        let tty = params.tty;
        tokio::spawn(async move {
            let mut resized = tty.then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())).transpose().ok().flatten();
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let winch = async {
                    match resized.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let msg = tokio::select! {
                    r = stdin.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => rc::frame(rc::STDIN, &buf[..n]),
                    },
                    Some(()) = winch => match window_size() {
                        Some((w, h)) => rc::size_message(w, h),
                        None => continue,
                    },
                };
                if tx.send(Message::Binary(msg.into())).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Message::Binary(rc::frame(rc::CLOSE, &[rc::STDIN]).into())).await;
            // Keep the sending half open until the command ends.
            std::future::pending::<()>().await;
        })
    });
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    let mut status = None;
    while let Some(msg) = rx.next().await {
        match msg? {
            Message::Binary(b) => match rc::parse(&b) {
                Some((rc::STDOUT, data)) => {
                    out.write_all(data).await?;
                    out.flush().await?;
                }
                Some((rc::STDERR, data)) => {
                    err.write_all(data).await?;
                    err.flush().await?;
                }
                Some((rc::ERROR, data)) => status = serde_json::from_slice::<serde_json::Value>(data).ok(),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    if let Some(task) = input {
        task.abort();
    }
    let status = status.ok_or_else(|| anyhow!("the connection closed before the command's status arrived"))?;
    let code = rc::exit_code(&status);
    if code == 126 {
        if let Some(m) = status["message"].as_str() {
            eprintln!("error: {m}");
        }
    }
    Ok(code)
}
