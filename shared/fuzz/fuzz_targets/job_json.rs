//! The job parser: any bytes as a `POST /v1/jobs` body. It must return a job or an error naming
//! a field, never panic; a job it accepts must survive a round trip through its own JSON.
#![no_main]

use hearsay_shared::JobSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(job) = JobSpec::from_json(body) {
        let again = serde_json::to_vec(&job).expect("an accepted job serialises");
        assert_eq!(JobSpec::from_json(&again), Ok(job), "round trip");
    }
});
