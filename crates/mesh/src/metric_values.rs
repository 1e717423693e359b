//! Writing plain values as Prometheus metrics from a collector: every node's metrics
//! are read from the node at scrape time, so they are constants by the time they are
//! encoded.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes one gauge without labels.
///
/// # Errors
///
/// When the encoder's writer fails.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// Encodes counters without labels, given as `(name, help, value)`; the encoding adds
/// `_total`.
///
/// # Errors
///
/// When the encoder's writer fails.
pub fn counters(
    encoder: &mut DescriptorEncoder,
    counters: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in counters {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

/// Encodes one metric family with a single label, given as `(label value, metric)`
/// pairs: per shard, per partition.
///
/// # Errors
///
/// When the encoder's writer fails.
pub fn labelled<M: prometheus_client::encoding::EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, metric_type): (&str, &str, prometheus_client::metrics::MetricType),
    label: &str,
    values: impl IntoIterator<Item = (String, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (value, metric) in values {
        metric.encode(family.encode_family(&[(label, value.as_str())])?)?;
    }
    Ok(())
}
