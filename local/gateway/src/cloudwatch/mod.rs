//! CloudWatch, locally: the metrics AWS would publish for the stack and the functions' own EMF
//! metrics ([`feed`], [`sampler`], kept in [`store`]), and the templates' alarms evaluated on
//! them ([`alarm`], [`engine`]), their states set in moto's CloudWatch and their changes
//! published to their SNS topics.

pub mod alarm;
pub mod engine;
pub mod feed;
pub mod sampler;
pub mod store;
