//! `herald chaos`: a fault run (the driver lives in `herald_devtools::chaos`).

pub use herald_devtools::chaos::ChaosArgs;
