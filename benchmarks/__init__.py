"""Side-by-side speed benchmarks of jaxnn against other frameworks; run `python -m benchmarks.run`."""
