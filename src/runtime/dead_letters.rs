//! Dead letters of a run's jobs: which job writes a source's bad records, and the headers a
//! dead-lettered record carries.

use std::collections::BTreeMap;

use rdkafka::message::{Header, OwnedHeaders};

use super::codec::Record;
use crate::compile::CompiledProject;
use crate::graph::NodeId;
use crate::project::config::OnError;

/// For each (source topic, dead-letter topic) read with `on_error: dead_letter` by the given
/// jobs (a model and the project it was compiled in), the job that writes its bad records: the
/// first by model name. Every hosted set has a writer for each source, so nothing is lost; two
/// processes hosting disjoint sets may both write one (a duplicate, never a loss).
pub fn bad_record_writers<'a>(
    jobs: impl IntoIterator<Item = (&'a str, &'a CompiledProject)>,
) -> BTreeMap<(String, String), String> {
    let mut writers: BTreeMap<(String, String), String> = BTreeMap::new();
    for (model, cp) in jobs {
        let Some(m) = cp.models.get(model) else { continue };
        for input in &m.inputs {
            let NodeId::Source(s) = input else { continue };
            let Some(src) = cp.sources.get(s) else { continue };
            if src.decl.table.on_error != OnError::DeadLetter {
                continue;
            }
            let key = (src.decl.table.topic.clone(), src.dead_letter_topic.clone());
            match writers.get_mut(&key) {
                Some(w) if w.as_str() <= model => {}
                Some(w) => *w = model.to_string(),
                None => {
                    writers.insert(key, model.to_string());
                }
            }
        }
    }
    writers
}

/// The headers of a dead-lettered record (also the native sinks', which add `streamctl.sink`).
pub(crate) fn dead_letter_headers(model: &str, topic: &str, r: &Record, reason: &str) -> OwnedHeaders {
    let partition = r.partition.to_string();
    let offset = r.offset.to_string();
    // The record's own headers first, as it was written (Kafka Connect's dead-letter queue keeps
    // them too), then where it came from and why it was refused.
    let own = r.headers.iter().fold(OwnedHeaders::new_with_capacity(r.headers.len() + 5), |hs, (key, v)| {
        hs.insert(Header { key, value: v.as_deref() })
    });
    own.insert(Header { key: "streamctl.error", value: Some(reason) })
        .insert(Header { key: "streamctl.source.topic", value: Some(topic) })
        .insert(Header { key: "streamctl.source.partition", value: Some(&partition) })
        .insert(Header { key: "streamctl.source.offset", value: Some(&offset) })
        .insert(Header { key: "streamctl.job", value: Some(model) })
}
