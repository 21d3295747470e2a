//! The optimizer bindings: the engine (parameters, their checks and the step), param-group
//! reading, `state_dict` conversion, and the locked view the fused training loop steps with.

mod adafactor;
mod engine;
mod fit;
mod groups;
mod lbfgs;
mod muon;
mod schedulefree;
mod state_dict;

pub(crate) use adafactor::adafactor_step;
pub use engine::Engine;
pub(super) use fit::Applied;
pub use lbfgs::Lbfgs;
pub(crate) use muon::muon_step;
pub(crate) use schedulefree::{
    schedulefree_adamw_step, schedulefree_interpolate, schedulefree_sgd_step,
};
