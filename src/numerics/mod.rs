//! Number formats: the float trait and dtypes ([`float`]), division by a fixed divisor
//! ([`divisor`]), 16-bit storage ([`half`]) and how a kernel reads and writes a parameter in
//! mixed precision ([`mixed`]).

pub mod divisor;
pub mod float;
pub mod half;
pub mod mixed;
