"""Static figures (matplotlib, PNG + SVG) of the analyses; every function takes data, returns a Figure."""
