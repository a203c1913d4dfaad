"""Latency and whole-pipeline accuracy benchmarks of the runtime."""
