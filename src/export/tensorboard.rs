//! TensorBoard event files from a session: every scalar series of the log
//! (see `tidy`) as `Summary.Value.simple_value` events at their step and
//! wall time, and the config as hyperparameters (the hparams plugin's
//! experiment, session start and session end summaries), so the HPARAMS
//! tab compares sessions exported side by side. Events are protobufs
//! ([`super::proto`]) in TFRecord framing ([`super::record`]).

use super::proto::Message;
use super::{record, tidy};
use crate::session::metrics::{MetricLine, Record, EVAL_PREFIX};
use crate::session::{SessionMeta, Status};
use std::collections::BTreeMap;

/// Event fields (tensorboard/compat/proto/event.proto).
mod event {
    pub const WALL_TIME: u32 = 1;
    pub const STEP: u32 = 2;
    pub const FILE_VERSION: u32 = 3;
    pub const SUMMARY: u32 = 5;
}

/// Summary, Summary.Value, SummaryMetadata and PluginData fields.
mod summary {
    pub const VALUE: u32 = 1;
    pub const TAG: u32 = 1;
    pub const SIMPLE_VALUE: u32 = 2;
    pub const TENSOR: u32 = 8;
    pub const METADATA: u32 = 9;
    pub const PLUGIN_DATA: u32 = 1;
    pub const PLUGIN_NAME: u32 = 1;
    pub const CONTENT: u32 = 2;
}

/// The hparams plugin's protos (tensorboard/plugins/hparams/*.proto).
mod hparams {
    pub const PLUGIN: &str = "hparams";
    pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
    pub const START_TAG: &str = "_hparams_/session_start_info";
    pub const END_TAG: &str = "_hparams_/session_end_info";
    // HParamsPluginData
    pub const VERSION: u32 = 1;
    pub const EXPERIMENT: u32 = 2;
    pub const SESSION_START_INFO: u32 = 3;
    pub const SESSION_END_INFO: u32 = 4;
    // SessionStartInfo
    pub const HPARAMS: u32 = 1;
    pub const START_TIME_SECS: u32 = 5;
    // SessionEndInfo
    pub const STATUS: u32 = 1;
    pub const END_TIME_SECS: u32 = 2;
    // Experiment
    pub const TIME_CREATED_SECS: u32 = 3;
    pub const HPARAM_INFOS: u32 = 4;
    pub const METRIC_INFOS: u32 = 5;
    // HParamInfo
    pub const INFO_NAME: u32 = 1;
    pub const INFO_TYPE: u32 = 4;
    // MetricInfo.name: MetricName.tag
    pub const METRIC_NAME: u32 = 1;
    pub const METRIC_TAG: u32 = 2;
    // DataType
    pub const STRING: i64 = 1;
    pub const BOOL: i64 = 2;
    pub const FLOAT64: i64 = 3;
    // Status
    pub const SUCCESS: i64 = 1;
    pub const FAILURE: i64 = 2;
}

/// google.protobuf.Value fields.
mod value {
    pub const NUMBER: u32 = 2;
    pub const STRING: u32 = 3;
    pub const BOOL: u32 = 4;
}

/// The hparams plugin's summaries carry an empty float tensor (as
/// TensorBoard's own writer does): dtype DT_FLOAT, shape [0].
const NULL_TENSOR: [u8; 6] = [0x08, 0x01, 0x12, 0x02, 0x12, 0x00];

fn event(wall: f64, step: u64) -> Message {
    Message::new()
        .double(event::WALL_TIME, wall)
        .varint(event::STEP, step as i64)
}

fn scalar(tag: &str, v: f64) -> Message {
    Message::new()
        .string(summary::TAG, tag)
        .float(summary::SIMPLE_VALUE, v as f32)
}

/// A summary value holding the hparams plugin data `field` = `data`.
fn plugin_value(tag: &str, field: u32, data: &Message) -> Message {
    let content = Message::new()
        .varint(hparams::VERSION, 0)
        .message(field, data);
    let plugin = Message::new()
        .string(summary::PLUGIN_NAME, hparams::PLUGIN)
        .bytes(summary::CONTENT, content.as_bytes());
    let metadata = Message::new().message(summary::PLUGIN_DATA, &plugin);
    Message::new()
        .string(summary::TAG, tag)
        .bytes(summary::TENSOR, &NULL_TENSOR)
        .message(summary::METADATA, &metadata)
}

/// A config value as google.protobuf.Value, and its hparams data type.
fn hparam_value(v: &toml::Value) -> (Message, i64) {
    match v {
        toml::Value::Integer(i) => (
            Message::new().double(value::NUMBER, *i as f64),
            hparams::FLOAT64,
        ),
        toml::Value::Float(f) => (Message::new().double(value::NUMBER, *f), hparams::FLOAT64),
        toml::Value::Boolean(b) => (
            Message::new().varint(value::BOOL, i64::from(*b)),
            hparams::BOOL,
        ),
        other => (
            Message::new().string(value::STRING, &crate::runs::keys::text(other)),
            hparams::STRING,
        ),
    }
}

/// The three hparams summaries: the experiment (which hparams and metrics
/// exist), this session's hparams, and — for a session that has ended —
/// its end status.
fn hparams_events(
    meta: &SessionMeta,
    config: &BTreeMap<String, toml::Value>,
    metrics: &[String],
    start: f64,
    end: f64,
) -> Vec<Message> {
    let mut experiment = Message::new().double(hparams::TIME_CREATED_SECS, start);
    // No group_name: TensorBoard would average sessions sharing one as
    // repeats of the same hparams; the group is an hparam instead.
    let mut start_info = Message::new().double(hparams::START_TIME_SECS, start);
    let mut hp: Vec<(String, toml::Value)> =
        config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(group) = &meta.group {
        hp.push(("group".into(), toml::Value::String(group.clone())));
    }
    for (key, v) in &hp {
        let (v, kind) = hparam_value(v);
        let entry = Message::new().string(1, key).message(2, &v);
        start_info = start_info.message(hparams::HPARAMS, &entry);
        let info = Message::new()
            .string(hparams::INFO_NAME, key)
            .varint(hparams::INFO_TYPE, kind);
        experiment = experiment.message(hparams::HPARAM_INFOS, &info);
    }
    for tag in metrics {
        let name = Message::new().string(hparams::METRIC_TAG, tag);
        let info = Message::new().message(hparams::METRIC_NAME, &name);
        experiment = experiment.message(hparams::METRIC_INFOS, &info);
    }
    let mut values = vec![
        plugin_value(hparams::EXPERIMENT_TAG, hparams::EXPERIMENT, &experiment),
        plugin_value(hparams::START_TAG, hparams::SESSION_START_INFO, &start_info),
    ];
    let status = match meta.status {
        Status::Finished | Status::Stopped => Some(hparams::SUCCESS),
        Status::Failed => Some(hparams::FAILURE),
        Status::Running | Status::Paused => None,
    };
    if let Some(status) = status {
        let end_info = Message::new()
            .varint(hparams::STATUS, status)
            .double(hparams::END_TIME_SECS, end);
        values.push(plugin_value(
            hparams::END_TAG,
            hparams::SESSION_END_INFO,
            &end_info,
        ));
    }
    values
        .into_iter()
        .map(|v| {
            let summary = Message::new().message(summary::VALUE, &v);
            event(start, 0).message(event::SUMMARY, &summary)
        })
        .collect()
}

/// Seconds since the Unix epoch of an RFC 3339 time (`session.json`'s
/// `created`).
fn unix_seconds(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_micros() as f64 / 1e6)
}

/// The event file's bytes for a session: its `session.json`, config (by
/// dotted key) and metrics lines. A line without `wall` (an older log) is
/// placed at `created` + `time`.
pub fn event_file(
    meta: &SessionMeta,
    config: &BTreeMap<String, toml::Value>,
    lines: &[MetricLine],
) -> Vec<u8> {
    let created = unix_seconds(&meta.created).unwrap_or(0.0);
    let wall_of = |l: &MetricLine| l.wall.unwrap_or(created + l.time);
    let start = lines.first().map_or(created, |l| wall_of(l) - l.time);
    let end = lines.last().map_or(start, wall_of);
    let mut out = Vec::new();
    let version = event(start, 0).string(event::FILE_VERSION, "brain.Event:2");
    record::append(&mut out, version.as_bytes());
    let mut metrics: Vec<String> = Vec::new();
    for l in lines {
        if let Record::Eval { metrics: m, .. } = &l.record {
            for name in m.keys() {
                let tag = format!("{EVAL_PREFIX}{name}");
                if !metrics.contains(&tag) {
                    metrics.push(tag);
                }
            }
        }
    }
    for e in hparams_events(meta, config, &metrics, start, end) {
        record::append(&mut out, e.as_bytes());
    }
    // The values changed keys started with, then each line's scalars.
    let initial = lines
        .first()
        .map(|first| (first, tidy::initial_config_points(lines)));
    let per_line = lines.iter().map(|line| (line, tidy::line_points(line)));
    for (line, points) in initial.into_iter().chain(per_line) {
        if points.is_empty() {
            continue;
        }
        let mut summary = Message::new();
        for p in &points {
            summary = summary.message(summary::VALUE, &scalar(&p.series, p.value));
        }
        let e = event(wall_of(line), line.step).message(event::SUMMARY, &summary);
        record::append(&mut out, e.as_bytes());
    }
    out
}

/// The event file's name: TensorBoard finds files by `tfevents` in it.
pub fn file_name(start: f64) -> String {
    let host = crate::session::provenance::host_name().unwrap_or_else(|| "localhost".into());
    format!("events.out.tfevents.{}.{host}.meltr-tui", start as u64)
}
