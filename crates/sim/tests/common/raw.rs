//! A raw WebSocket client, for what twilight never sends: binary client frames, bad
//! payloads, staying on a connection after op 9.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use shardmesh_sim::Simulator;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::DEADLINE;

/// One raw gateway connection.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to the simulator's gateway with `query` (e.g. `v=10&encoding=json`).
pub async fn connect(sim: &Simulator, query: &str) -> Socket {
    let url = format!("{}/?{query}", sim.gateway_url());
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connects")
        .0
}

/// The next message, failing after the deadline.
pub async fn next(socket: &mut Socket) -> Message {
    tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("a message in time")
        .expect("the socket is open")
        .expect("no transport error")
}

/// The next message, which must be a JSON text frame.
pub async fn next_json(socket: &mut Socket) -> Value {
    match next(socket).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until a close frame and returns its code.
pub async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        if let Message::Close(frame) = next(socket).await {
            return frame.map_or(1005, |f| f.code.into());
        }
    }
}

/// Sends `payload` as a text frame.
pub async fn send(socket: &mut Socket, payload: &Value) {
    socket
        .send(Message::text(payload.to_string()))
        .await
        .unwrap();
}
