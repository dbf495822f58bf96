"""Examples built with tidings."""
