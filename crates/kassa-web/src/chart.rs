//! The balance chart: server-rendered SVG, integer arithmetic only.
