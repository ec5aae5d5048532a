//! The method, in pure tch: the MELTR network, the combiners (MELTR and the
//! baselines) behind one interface, the AID hypergradient and the gradient
//! shares. No I/O, no UI.
#![warn(missing_docs)]

pub mod combiner;
pub mod fit;
pub mod forward_ad;
pub mod hypergrad;
pub mod net;
pub mod phases;
pub mod shares;
