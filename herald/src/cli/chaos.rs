//! `herald chaos`: a fault run (the driver lives in `herald::chaos`).

pub use herald::chaos::ChaosArgs;
