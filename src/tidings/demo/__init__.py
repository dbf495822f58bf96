"""``tidings demo``: the articles' e-commerce system, end to end, faults included."""
