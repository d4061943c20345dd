//! `GET /api/v1/namespaces/{ns}/pods/{name}/exec` on every node, as `kubectl exec` and
//! `orchctl exec` call it: a WebSocket speaking the remote-command protocol. The node that
//! runs the pod starts the command in the container (containerd exec) and streams its
//! stdin, stdout, stderr and exit status; any other node relays the WebSocket to it.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::node_api::{choose_container, NodeApi};
use super::relay;
use crate::api::status::ApiError;
use crate::kubelet::containerd::ContainerdRuntime;
use crate::kubelet::runtime::{ContainerRuntime, ContainerState};
use crate::kubelet::sync::{LABEL_CONTAINER, LABEL_UID};
use crate::remotecommand::{self as rc, ExecParams};

pub async fn handle(api: NodeApi, ns: String, name: String, query: String, ws: WebSocketUpgrade) -> Response {
    match prepare(api, &ns, &name, &query, ws).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn prepare(api: NodeApi, ns: &str, name: &str, query: &str, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    let pod = api.pod(ns, name).await?;
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request(format!("pod {name} is not scheduled to a node yet")))?;
    let params = rc::parse_query(query);
    if params.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least one command for the container"));
    }
    if node != api.name {
        let addr = api.address_of(node).await?;
        let url = format!("wss://{addr}/api/v1/namespaces/{ns}/pods/{name}/exec?{query}");
        let upstream = relay::connect(&api.relay_client(), &url, &rc::PROTOCOLS).await.map_err(|e| ApiError::unavailable(format!("node {node:?}: {e}")))?;
        return Ok(ws.protocols(rc::PROTOCOLS).on_upgrade(move |socket| relay::relay(socket, upstream)));
    }
    let container = choose_container(&pod, name, params.container.as_ref())?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let runtime = ContainerdRuntime::connect(&api.containerd_socket).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let running = runtime.list().await.map_err(|e| ApiError::internal(e.to_string()))?.into_iter().find(|c| {
        c.labels.get(LABEL_UID) == Some(&uid) && c.labels.get(LABEL_CONTAINER) == Some(&container) && matches!(c.state, ContainerState::Running { .. })
    });
    let id = running.map(|c| c.id).ok_or_else(|| ApiError::bad_request(format!("container {container} is not running in pod {name}")))?;
    Ok(ws.protocols(rc::PROTOCOLS).on_upgrade(move |socket| session(socket, runtime, id, params)))
}

async fn session(socket: WebSocket, rt: ContainerdRuntime, id: String, p: ExecParams) {
    let (mut sink, mut stream) = socket.split();
    let exec_id = format!("exec-{:016x}", rand::random::<u64>());
    let io = match rt.exec(&id, &exec_id, &p.command, p.stdin, p.tty).await {
        Ok(io) => io,
        Err(e) => {
            let status = rc::failure(&e.to_string()).to_string();
            let _ = sink.send(Message::Binary(rc::frame(rc::ERROR, status.as_bytes()).into())).await;
            let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
            return;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let pipes = [(rc::STDOUT, Some(io.stdout)), (rc::STDERR, io.stderr)];
    for (channel, mut pipe) in pipes.into_iter().filter_map(|(c, p)| Some((c, p?))) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 || tx.send(rc::frame(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut stdin = io.stdin;
    let (rt_in, id_in, exec_in) = (rt.clone(), id.clone(), exec_id.clone());
    let (rt_size, id_size, exec_size) = (rt.clone(), id.clone(), exec_id.clone());
    let close_stdin = move || {
        let (rt, id, exec_id) = (rt_in.clone(), id_in.clone(), exec_in.clone());
        async move {
            if let Err(e) = rt.exec_close_stdin(&id, &exec_id).await {
                tracing::debug!(error = %e, "closing an exec's stdin");
            }
        }
    };
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) => match rc::parse(&b) {
                    Some((rc::STDIN, data)) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(data).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Some((rc::RESIZE, size)) => match rc::parse_size(size) {
                        Some((w, h)) => {
                            if let Err(e) = rt_size.exec_resize(&id_size, &exec_size, w, h).await {
                                tracing::debug!(error = %e, "resizing an exec's terminal");
                            }
                        }
                        None => tracing::debug!("an exec resize message that is not {{Width, Height}}"),
                    },
                    Some((rc::CLOSE, [rc::STDIN])) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.flush().await;
                            drop(w);
                            close_stdin().await;
                        }
                    }
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    while let Some(f) = rx.recv().await {
        if sink.send(Message::Binary(f.into())).await.is_err() {
            break;
        }
    }
    let status = match rt.exec_wait(&id, &exec_id).await {
        Ok(code) => rc::exit_status(code),
        Err(e) => rc::failure(&e.to_string()),
    };
    let _ = sink.send(Message::Binary(rc::frame(rc::ERROR, status.to_string().as_bytes()).into())).await;
    // A normal close (1000): kubectl reports a close without a status code as an error.
    let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
    input.abort();
}
