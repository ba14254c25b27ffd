"""What the tests and the benchmarks share: starting and stopping servers, nginx in front of them, and the drills."""
