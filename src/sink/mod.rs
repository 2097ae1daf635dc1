//! Where pipewarden's results go. The embedded local store is the default (and, for now, the
//! only) sink; the Elasticsearch sink joins it as another variant.

pub mod elasticsearch;
pub mod local;
