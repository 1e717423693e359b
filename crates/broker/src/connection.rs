//! One managed broker connection: connect with a timeout, reconnect with capped,
//! jittered exponential backoff, report what happens as [`ConnectionEvent`]s.
//!
//! An outage is logged once, not per attempt: a WARN when the connection is lost (or
//! its set-up fails), the attempts in between at DEBUG, and an INFO with the outage's
//! length once the component that owns the link has set the connection up again
//! ([`Link::ready`]). A broker blip that heals is then two lines per connection.
//!
//! lapin's own auto-recovery is not used: it re-subscribes stream consumers at the
//! offset they first asked for, not where they got to, so a recovered reader would
//! read everything again; and it can hang. Each component owns a [`Link`] and
//! rebuilds its channels and topology on every connect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{Backoff, BrokerConfig, Error};

/// Something that happened to a component's broker connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection was established; `attempt` is 0 for the first try after a loss.
    Connected {
        /// Connection name, e.g. `publisher`.
        name: String,
        /// Failed attempts before this one.
        attempt: u32,
    },
    /// The connection (or a channel on it) failed; the component reconnects.
    Lost {
        /// Connection name.
        name: String,
        /// What failed, never containing the password.
        reason: String,
    },
    /// A connection attempt failed; the next one starts after `delay`.
    Retrying {
        /// Connection name.
        name: String,
        /// Failed attempts so far.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        reason: String,
    },
}

/// Where a [`Link`] is; the one place that knows whether a connection exists.
#[derive(Debug)]
enum State {
    /// Never connected yet.
    Initial,
    /// Lost; `attempt` failed attempts since.
    Disconnected { attempt: u32 },
    /// Up; `attempt` failed attempts preceded it, counting failed set-ups after a
    /// successful connect, so a broker that accepts connections but fails every
    /// declare still gets backoff.
    Connected {
        connection: Arc<Connection>,
        attempt: u32,
        since: Instant,
    },
    /// Closed on purpose; never reconnects.
    Closed,
}

/// A connection that was lost and is not set up again yet.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    /// Whether a refusal (a login or vhost the broker does not accept) was logged at
    /// ERROR in this outage: waiting does not fix it, a person must.
    refusal_logged: bool,
}

/// A broker connection with its reconnect policy.
#[derive(Debug)]
pub(crate) struct Link {
    config: Arc<BrokerConfig>,
    /// What the connection serves, e.g. `publisher` or `reader <stream>`.
    name: Arc<str>,
    state: State,
    /// Set from the loss (logged at WARN) until [`Link::ready`] (logged at INFO); what
    /// fails in between is logged at DEBUG.
    outage: Option<Outage>,
    backoff: Backoff,
    events: broadcast::Sender<ConnectionEvent>,
    shutdown: CancellationToken,
}

impl Link {
    pub(crate) fn new(
        config: Arc<BrokerConfig>,
        name: impl Into<Arc<str>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            backoff: config.backoff(),
            config,
            name: name.into(),
            state: State::Initial,
            outage: None,
            events: broadcast::channel(64).0,
            shutdown,
        }
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The connection, establishing it if needed.
    ///
    /// The very first attempt is made once, so a misconfigured node fails at start with
    /// the reason. After a loss it retries with backoff until it succeeds or shutdown
    /// is cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an attempt that is dropped half-way leaves the link disconnected.
    pub(crate) async fn connection(&mut self) -> Result<Arc<Connection>, Error> {
        loop {
            match &self.state {
                State::Connected { connection, .. } if connection.status().connected() => {
                    return Ok(Arc::clone(connection));
                }
                State::Connected { .. } => self.lost("connection closed".into()),
                State::Closed => return Err(Error::Closed("connection")),
                State::Initial => {
                    let connection = self.attempt().await?;
                    return Ok(self.connected(connection, 0));
                }
                State::Disconnected { attempt } => {
                    let attempt = *attempt;
                    if attempt > 0 {
                        let delay = self.backoff.delay(attempt - 1, &mut rand::rng());
                        tokio::select! {
                            () = self.shutdown.cancelled() => return Err(Error::Cancelled),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    match self.attempt().await {
                        Ok(connection) => return Ok(self.connected(connection, attempt)),
                        Err(Error::Cancelled) => return Err(Error::Cancelled),
                        Err(error) => {
                            let delay = self.backoff.ceiling(attempt);
                            self.attempt_failed(attempt, &error);
                            let _ = self.events.send(ConnectionEvent::Retrying {
                                name: self.name.to_string(),
                                attempt: attempt + 1,
                                delay,
                                reason: error.to_string(),
                            });
                            self.state = State::Disconnected {
                                attempt: attempt + 1,
                            };
                        }
                    }
                }
            }
        }
    }

    /// Records that the connection failed; the next [`Link::connection`] reconnects.
    pub(crate) fn lost(&mut self, reason: String) {
        let State::Connected { attempt, since, .. } = self.state else {
            return;
        };
        let lived = since.elapsed();
        if self.begins_outage(lived) {
            warn!(connection = &*self.name, url = %self.config.url, %reason, "broker connection lost, reconnecting");
        } else {
            debug!(connection = &*self.name, url = %self.config.url, %reason, "broker connection lost again before its set-up was done");
        }
        let _ = self.events.send(ConnectionEvent::Lost {
            name: self.name.to_string(),
            reason,
        });
        let attempt = attempts_after_loss(attempt, lived, self.backoff.max());
        // Dropping the last handle closes a half-alive connection (a channel error leaves
        // the socket up); a dead one is gone already.
        self.state = State::Disconnected { attempt };
    }

    /// Records that setting up a fresh connection (declares, consume) failed: like
    /// [`Link::lost`], but the next attempt waits with backoff.
    pub(crate) fn setup_failed(&mut self, reason: &str) {
        if let State::Connected { attempt, since, .. } = self.state {
            if self.begins_outage(since.elapsed()) {
                warn!(connection = &*self.name, url = %self.config.url, attempt, %reason, "broker set-up failed, reconnecting");
            } else {
                // Right after a broker restart, e.g. a stream whose home node is not back.
                debug!(connection = &*self.name, url = %self.config.url, attempt, %reason, "broker set-up failed again, reconnecting");
            }
            let _ = self.events.send(ConnectionEvent::Lost {
                name: self.name.to_string(),
                reason: reason.to_owned(),
            });
            self.state = State::Disconnected {
                attempt: attempt + 1,
            };
        }
    }

    /// Records that the component has set the connection up again (declared, consumed):
    /// the outage, if there was one, is over and logged at INFO with its length.
    pub(crate) fn ready(&mut self) {
        let Some(outage) = self.outage.take() else {
            return;
        };
        let attempt = match self.state {
            State::Connected { attempt, .. } => attempt,
            _ => 0,
        };
        let outage_ms = u64::try_from(outage.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        info!(connection = &*self.name, url = %self.config.url, outage_ms, failed_attempts = attempt, "broker connection back");
    }

    /// Logs a failed reconnect attempt: at DEBUG, as the loss that began the outage was
    /// logged at WARN, unless the broker refused the login, which is an ERROR once per
    /// outage (the link keeps trying, so the node heals once someone fixes it).
    fn attempt_failed(&mut self, attempt: u32, error: &Error) {
        let outage = self.outage.get_or_insert(Outage {
            since: Instant::now(),
            refusal_logged: false,
        });
        if matches!(error, Error::Refused { .. }) && !outage.refusal_logged {
            outage.refusal_logged = true;
            error!(connection = &*self.name, url = %self.config.url, attempt, %error, "the broker refuses this node's connection; fix the user, password or vhost permissions (retrying meanwhile)");
        } else {
            debug!(connection = &*self.name, url = %self.config.url, attempt, %error, "broker reconnect attempt failed");
        }
    }

    /// Whether a failure of a connection that served for `lived` begins an outage (to
    /// log at WARN) rather than continuing one, and starts it if so.
    ///
    /// A connection that served a while ended any earlier outage even if its owner never
    /// said [`Link::ready`], so a later loss is never hidden at DEBUG.
    fn begins_outage(&mut self, lived: Duration) -> bool {
        let continues = self.outage.is_some() && lived < self.backoff.max();
        if !continues {
            self.outage = Some(Outage {
                since: Instant::now(),
                refusal_logged: false,
            });
        }
        !continues
    }

    /// Closes the connection for good.
    pub(crate) async fn close(&mut self) {
        if let State::Connected { connection, .. } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                connection.close(200, "closing".into()),
            )
            .await;
        }
    }

    async fn attempt(&self) -> Result<Connection, Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("shardmesh-{}", self.name).into());
        let connect = Connection::connect(self.config.url.expose(), properties);
        tokio::select! {
            () = self.shutdown.cancelled() => Err(Error::Cancelled),
            result = tokio::time::timeout(self.config.connect_timeout(), connect) => match result {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(error)) => Err(self.connect_error(&error)),
                Err(_) => Err(Error::Unreachable {
                    reason: format!("no handshake within {:?}", self.config.connect_timeout()),
                }),
            },
        }
    }

    /// A failed connect as an [`Error`]: [`Error::Refused`] when the broker turned the
    /// login or the vhost down (waiting does not fix that), else [`Error::Unreachable`].
    fn connect_error(&self, error: &lapin::Error) -> Error {
        use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
        // A vhost that is still starting (RabbitMQ booting, or restarting the vhost)
        // answers NOT_ALLOWED with "vhost '/' is down": that one heals by itself.
        if let lapin::ErrorKind::ProtocolError(amqp) = error.kind()
            && matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                    | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
            )
            && !amqp.get_message().as_str().contains("is down")
        {
            return Error::Refused {
                operation: "connection.open",
                name: self.config.url.to_string(),
                reason: amqp.get_message().to_string(),
            };
        }
        Error::Unreachable {
            reason: error.to_string(),
        }
    }

    fn connected(&mut self, connection: Connection, attempt: u32) -> Arc<Connection> {
        let connection = Arc::new(connection);
        if self.outage.is_some() {
            // The INFO comes once the owner has set it up again (Link::ready).
            debug!(connection = &*self.name, url = %self.config.url, attempt, "broker reconnected, setting up");
        } else {
            info!(connection = &*self.name, url = %self.config.url, attempt, "broker connected");
        }
        let _ = self.events.send(ConnectionEvent::Connected {
            name: self.name.to_string(),
            attempt,
        });
        self.state = State::Connected {
            connection: Arc::clone(&connection),
            attempt,
            since: Instant::now(),
        };
        connection
    }
}

/// The failed-attempt count after a connection that followed `attempt` failures was
/// lost after `lived`.
///
/// A connection that served for a while (at least the longest backoff) is retried at
/// once; one lost soon after it came up (a broker that accepts and then drops, a queue
/// whose home node is not back yet) keeps counting, or the component would reconnect
/// in a tight loop.
pub(crate) fn attempts_after_loss(attempt: u32, lived: Duration, longest_wait: Duration) -> u32 {
    if lived >= longest_wait {
        0
    } else {
        attempt.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_lost_right_after_connecting_backs_off_further() {
        let max = Duration::from_secs(10);
        assert_eq!(attempts_after_loss(0, Duration::from_millis(5), max), 1);
        assert_eq!(attempts_after_loss(6, Duration::from_secs(1), max), 7);
        assert_eq!(attempts_after_loss(u32::MAX, Duration::ZERO, max), u32::MAX);
    }

    #[test]
    fn a_connection_that_served_a_while_is_retried_at_once() {
        let max = Duration::from_secs(10);
        assert_eq!(attempts_after_loss(6, Duration::from_secs(10), max), 0);
        assert_eq!(attempts_after_loss(0, Duration::from_secs(3_600), max), 0);
    }
}
