"""What the dashboard reads and changes, one module per concept, no web types in them."""
