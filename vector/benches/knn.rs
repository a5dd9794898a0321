//! KNN latency and recall on Redis (work in progress).

fn main() {}
