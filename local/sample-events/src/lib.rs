//! The sample events of `events/` are fixtures of record: `tests/sample_events.rs` deserialises
//! each into its `aws_lambda_events` type and runs it through the real handler of its function,
//! against moto, with the outcome its file name promises. The tests live in a crate of their own
//! because they link the functions' libraries, which the local gateway never does.
