"""Speed and memory benchmarks (see RESULTS.md)."""
