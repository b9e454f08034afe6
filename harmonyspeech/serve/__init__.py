"""Ray Serve wiring: the application built from config. The only package that imports ray."""
