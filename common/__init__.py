"""Small helpers shared by `classification`, `detection` and `app`, with no model framework imports."""
