//! `reverse-worker`: a stdio worker serving job `reverse`, which answers the
//! workload with its bytes in reverse order. The benchmark's stdio worker
//! (`workers/Bench/Reverse.toml`) and the smallest example of the helper.

use gearman_driver_worker::{Job, Worker};

fn main() -> std::io::Result<()> {
    Worker::new()
        .job("reverse", |job: &mut Job| {
            let mut bytes = job.workload().to_vec();
            bytes.reverse();
            Ok(bytes)
        })
        .run()
}
