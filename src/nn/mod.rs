//! Small building blocks shared by MELTR and the built-in workloads.

pub mod transformer;
