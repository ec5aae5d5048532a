//! The method, in pure tch: the MELTR network, the combiners (MELTR and the
//! baselines) behind one interface, the AID hypergradient, and the
//! optimizers. No I/O, no UI.

pub mod autograd;
pub mod combiner;
pub mod forward_ad;
pub mod hypergrad;
pub mod net;
pub mod optim;
pub mod phases;
pub mod shares;
