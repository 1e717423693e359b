//! The RabbitMQ every test and benchmark shares: where it is, and a loud failure when it
//! is not there (a test that needs the broker never passes without it).

/// The default test broker: RabbitMQ on this machine with its stock user.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The shared test broker: `$SHARDMESH_TEST_AMQP_URL`, else [`DEFAULT_BROKER_URL`].
pub fn broker_url() -> String {
    std::env::var("SHARDMESH_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_BROKER_URL.into())
}

/// [`broker_url`], once a connection to it has succeeded.
///
/// # Panics
///
/// When RabbitMQ cannot be reached, saying how to start it or point at another.
pub async fn require_broker() -> String {
    let url = broker_url();
    if let Err(error) =
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
    {
        panic!(
            "RabbitMQ at {url} is unreachable ({error}): this test needs it; start it \
             (rabbitmq-server -detached) or set SHARDMESH_TEST_AMQP_URL"
        );
    }
    url
}

/// `host:port` of the broker in `url` (`amqp://user:pass@host:port/vhost`).
///
/// # Panics
///
/// When `url` has no `host:port` part.
pub fn broker_authority(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let after_scheme = after_at
        .split_once("://")
        .map_or(after_at, |(_, rest)| rest);
    after_scheme
        .split('/')
        .next()
        .filter(|authority| authority.contains(':'))
        .unwrap_or_else(|| panic!("no host:port in broker url {url}"))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_is_host_and_port() {
        assert_eq!(broker_authority(DEFAULT_BROKER_URL), "127.0.0.1:5672");
        assert_eq!(
            broker_authority("amqps://u:p@rabbit.example:5671/vh"),
            "rabbit.example:5671"
        );
    }
}
