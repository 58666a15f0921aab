//! CNI delegate execution (being written).
