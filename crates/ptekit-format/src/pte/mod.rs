//! .pte container (owned by the container work).
